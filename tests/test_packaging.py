"""The project's own plumbing: dependency lists in sync, CLI basics, CI = README."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import payflow
from payflow.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\s\[]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    names: set[str] = set()
    for req in reqs:
        name = _name(req)
        if name == "payflow":
            continue  # the test extra pulls in the other extras
        names.add(name)
        if name == "dask" and "distributed" in req:
            names.add("distributed")  # conda-forge splits dask[distributed] in two
    return names


def _environment_names() -> set[str]:
    names = set()
    text = (ROOT / "environment.yml").read_text()
    for line in text.split("dependencies:", 1)[1].splitlines():
        m = re.match(r"\s*-\s+([A-Za-z0-9_.\-]+)", line)
        if m and not line.strip().startswith("- -e") and m.group(1) not in ("python", "pip"):
            names.add(m.group(1).lower())
    return names


def test_environment_yml_names_the_same_dependencies_as_pyproject() -> None:
    assert _environment_names() == _pyproject_names()


def test_version_and_help() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "payflow.cli", "--version"], capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip() == f"payflow {payflow.__version__}"
    out = subprocess.run(
        [sys.executable, "-m", "payflow.cli", "--help"], capture_output=True, text=True
    )
    assert out.returncode == 0 and "usage: payflow" in out.stdout


def test_no_subcommand_prints_help(capsys: object) -> None:
    assert main([]) == 0


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```bash\n(.*?)\n```", readme, re.S)
    test_cmd = next(b for b in blocks if "pytest" in b and "[test]" in b)
    assert test_cmd.strip() in ci.replace(" \\\n  ", " ")


def test_py_typed_ships() -> None:
    assert (Path(payflow.__file__).parent / "py.typed").exists()
