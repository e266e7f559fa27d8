"""Run every notebook top to bottom at a scale and print how long each took.

    python tools/time_notebooks.py [--scale full|small] [NOTEBOOK ...]

Each notebook runs in a fresh kernel through nbclient (as tests/test_notebooks_run.py
does), one after the other, with ``PAYFLOW_NOTEBOOK_SCALE`` set. Printed per notebook:
wall seconds, standard-error outputs (must be 0), widget outputs (progress bars) and the
machine's 1-minute load average before and after, since other work on the machine
stretches the times. The table in notebooks/README.md comes from this script.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import nbclient
import nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
WIDGET = "application/vnd.jupyter.widget-view+json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", default="full", choices=["full", "small"])
    parser.add_argument("notebooks", nargs="*", help="names (default: every notebook)")
    args = parser.parse_args()
    os.environ["PAYFLOW_NOTEBOOK_SCALE"] = args.scale
    paths = [NOTEBOOKS / n for n in args.notebooks] or sorted(NOTEBOOKS.glob("*.ipynb"))
    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, scale {args.scale}, {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("| notebook | wall (s) | stderr outputs | widget outputs | load before / after |")
    print("|---|---|---|---|---|")
    failed = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        client = nbclient.NotebookClient(
            nb,
            timeout=3600,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        before = os.getloadavg()[0]
        began = time.perf_counter()
        try:
            client.execute()
            status = ""
        except Exception as exc:  # report and go on: the other notebooks still get timed
            status = f" FAILED: {type(exc).__name__}"
            failed += 1
        wall = time.perf_counter() - began
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        stderr = sum(
            o.get("output_type") == "stream" and o.get("name") == "stderr" for o in outputs
        )
        widgets = sum(WIDGET in o.get("data", {}) for o in outputs)
        print(
            f"| `{path.stem}` | {wall:.0f}{status} | {stderr} | {widgets} | "
            f"{before:.1f} / {os.getloadavg()[0]:.1f} |",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
