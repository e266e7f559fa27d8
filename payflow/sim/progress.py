"""Progress bars for long runs: a text bar in a terminal, a widget in JupyterLab.

``progress=None`` (the default of every long-running helper) means "show a bar
where someone is watching": when standard error is a terminal, or inside a
Jupyter kernel that can draw widgets (ipywidgets installed, as the
``notebooks`` extra does). There ``tqdm.auto`` draws an ipywidgets bar, a
``display_data`` output, so the notebook shows no red standard-error box; without
ipywidgets tqdm would print a ``TqdmWarning`` instead, so the bar stays off.
``progress=True`` / ``False`` force it on or off.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["bar", "in_widget_kernel", "wanted"]

T = TypeVar("T")


def in_widget_kernel() -> bool:
    """Whether this runs in a Jupyter kernel that can draw ipywidgets."""
    if "ipykernel" not in sys.modules:
        return False  # cheap first: a plain interpreter never imported it
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return False  # IPython in a terminal: a text bar there, as for any terminal
    return importlib.util.find_spec("ipywidgets") is not None


def wanted(progress: bool | None) -> bool:
    """``progress`` resolved: ``None`` means a terminal on stderr or a widget kernel."""
    if progress is not None:
        return bool(progress)
    return sys.stderr.isatty() or in_widget_kernel()


def bar(
    iterable: Iterable[T],
    *,
    desc: str,
    unit: str = "run",
    total: int | None = None,
    progress: bool | None = None,
) -> Iterable[T]:
    """``iterable`` wrapped in a progress bar when :func:`wanted` (else as is)."""
    if not wanted(progress):
        return iterable
    if in_widget_kernel():
        from tqdm.auto import tqdm  # the ipywidgets bar: display_data, not stderr

        shown: Iterable[T] = tqdm(iterable, desc=desc, unit=unit, total=total)
        return shown
    from tqdm import tqdm as text_tqdm

    kwargs: dict[str, Any] = {"desc": desc, "unit": unit, "total": total, "file": sys.stderr}
    text: Iterable[T] = text_tqdm(iterable, **kwargs)
    return text
