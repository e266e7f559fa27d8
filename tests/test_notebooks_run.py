"""Every notebook runs, small in the default suite and full size under ``-m slow``, and
prints nothing to standard error (no red warning boxes in front of a reader).

The default suite runs the notebooks here (not through ``--nbmake`` on the
``notebooks`` folder) so that each runs once and its outputs can be checked;
``pytest notebooks/02-slow-provider-day.ipynb`` still runs one through nbmake.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def stderr_outputs(nb: Any) -> list[tuple[int, str]]:
    """(cell index, text) of every stream output to standard error."""
    return [
        (i, "".join(out.get("text", "")))
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream" and out.get("name") == "stderr"
    ]


def execute(path: Path) -> Any:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=1800,
        kernel_name=nb.metadata.get("kernelspec", {}).get("name", "python3"),
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    return nb


def check(path: Path) -> None:
    nb = execute(path)
    noise = stderr_outputs(nb)
    assert not noise, f"{path.name}: standard error in cell(s) " + "; ".join(
        f"[{i}] {text[:300]!r}" for i, text in noise
    )


def test_stderr_outputs_are_found() -> None:
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="warn\n")]
    nb.cells = [nbformat.v4.new_markdown_cell("m"), cell]
    assert stderr_outputs(nb) == [(1, "warn\n")]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_small_without_stderr(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYFLOW_NOTEBOOK_SCALE", "small")
    check(path)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_runs_full_size_without_stderr(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYFLOW_NOTEBOOK_SCALE", "full")
    check(path)
