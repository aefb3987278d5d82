"""The conda environment and the README stay in step with the project's own files."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name_and_spec(requirement: str):
    m = re.match(r"\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(.*)", requirement)
    return m.group(1).lower().replace("_", "-"), m.group(3).replace(" ", "")


def _pyproject_requirements():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for extra in meta["optional-dependencies"].values():
        reqs += [r for r in extra if not r.startswith("glass-softness")]
    return dict(_name_and_spec(r) for r in reqs)


def _environment_requirements():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            reqs.update(_name_and_spec(r) for r in dep["pip"])
        else:
            name, spec = _name_and_spec(dep)
            if name not in ("python", "pip"):
                reqs[name] = spec
    return reqs


def test_environment_names_the_same_dependencies_as_pyproject():
    assert _environment_requirements() == _pyproject_requirements()


def test_broken_jax_is_excluded_everywhere():
    for spec in (_pyproject_requirements()["jax"], _environment_requirements()["jax"]):
        for bad in ("0.10.2", "0.11.0", "0.11.1"):
            assert f"!={bad}" in spec


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text().splitlines()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme[:25] if line.startswith("    ")]
    test_commands = [c for c in commands if "pytest" in c]
    assert len(test_commands) == 1
    assert test_commands[0] in ci
