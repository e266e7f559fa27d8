"""One test-mode switch for every client (modelled on stamina's ``set_testing``).

Rule: in test mode every client's sleeps take no time. The policy's decisions
(retry or not, how long to wait, when to poll) and the delays hooks see are
unchanged; deadlines stay on the real clock, as the provider under test runs in
real time -- so a payment left pending is polled without pause until its real
polling deadline (give test payments a short one). The switch is process-wide,
changed under a lock, and ``set_testing`` returns a context manager that restores
the previous setting.
"""

from __future__ import annotations

import threading
from types import TracebackType

__all__ = ["is_testing", "set_testing"]

_lock = threading.Lock()
_testing = False


class _Restore:
    """Returned by :func:`set_testing`: on exit, puts back the setting it replaced."""

    __slots__ = ("_previous",)

    def __init__(self, previous: bool) -> None:
        self._previous = previous

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        global _testing
        with _lock:
            _testing = self._previous


def set_testing(testing: bool = True) -> _Restore:
    """Turn test mode on (or off) now; usable as ``with set_testing():`` to restore it.

    >>> with payflow.set_testing():   # doctest: +SKIP
    ...     client.pay("o-1", 1995)   # retries and polls without waiting
    """
    global _testing
    if not isinstance(testing, bool):
        raise TypeError(f"set_testing: testing must be True or False, got {testing!r}")
    with _lock:
        previous, _testing = _testing, testing
    return _Restore(previous)


set_testing.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def is_testing() -> bool:
    """Whether test mode is on (see :func:`set_testing`)."""
    return _testing
