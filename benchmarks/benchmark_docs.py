"""Writes a benchmark's section into docs/benchmarks.md (shared by the benchmark scripts)."""

from __future__ import annotations

from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def replace_section(section: str, path: Path = BENCHMARKS_MD) -> None:
    """Put ``section`` (Markdown starting with its ``## Heading``) in place of the section of
    the same heading, or append it when there is none. The old section's ``### `` subsections
    are written by hand (the scripts write none) and are kept after the new text."""
    heading = section.splitlines()[0]
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    start = text.find(heading + "\n")
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    else:
        end = text.find("\n## ", start + 1)
        old = text[start:end] if end >= 0 else text[start:]
        by_hand = old.find("\n### ")
        kept = "\n" + old[by_hand + 1:].rstrip("\n") + "\n" if by_hand >= 0 else ""
        text = text[:start] + section.rstrip("\n") + "\n" + kept + (text[end:] if end >= 0 else "")
    path.write_text(text)
