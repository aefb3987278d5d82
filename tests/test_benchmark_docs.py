"""benchmarks/benchmark_docs.py: how the benchmark scripts rewrite docs/benchmarks.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from benchmark_docs import replace_section  # noqa: E402

DOC = """# Benchmarks

## A

old measured text

### What it shows

written by hand

## B

other section
"""


def test_a_section_is_replaced_and_its_hand_written_subsections_kept(tmp_path):
    path = tmp_path / "benchmarks.md"
    path.write_text(DOC)
    replace_section("## A\n\nnew measured text\n", path)
    assert path.read_text() == DOC.replace("old measured text", "new measured text")
    replace_section("## C\n\nappended\n", path)
    assert path.read_text().endswith("other section\n\n## C\n\nappended\n")
    replace_section("## B\n\nreplaced\n", path)  # a section with no subsection
    assert "other section" not in path.read_text() and "## B\n\nreplaced\n\n## C" in path.read_text()
