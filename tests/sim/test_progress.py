"""Progress bars: off where nobody watches, a widget (display_data, never stderr) in a
Jupyter kernel with ipywidgets."""

from __future__ import annotations

import pytest

from payflow.sim import progress


def test_off_under_pytest_and_forced_either_way() -> None:
    assert not progress.in_widget_kernel()  # pytest: no kernel
    assert progress.wanted(True) and not progress.wanted(False)
    items = [1, 2, 3]
    assert progress.bar(items, desc="x", progress=False) is items
    assert list(progress.bar(items, desc="x", progress=True)) == items


def test_a_kernel_shows_a_widget_bar_and_nothing_on_stderr() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipywidgets")
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            "from concurrent.futures import ThreadPoolExecutor\n"
            "from payflow.sim import progress\n"
            "from payflow.sim.sweep import sweep\n"
            "assert progress.in_widget_kernel()\n"
            "with ThreadPoolExecutor(1) as pool:\n"
            "    runs = sweep('calm-day', 'naive', 2, executor=pool, orders=50)\n"
            "len(runs)"
        )
    ]
    nbclient.NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert not [o for o in outputs if o.get("name") == "stderr"], outputs
    widgets = [
        o
        for o in outputs
        if o["output_type"] == "display_data"
        and "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widgets, outputs  # the tqdm.auto bar, drawn by ipywidgets
