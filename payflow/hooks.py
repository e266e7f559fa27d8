"""Hooks: plain callables that receive every event a payment flow emits.

A hook is any ``callable(event)``; the events are the frozen records of
:mod:`payflow.core.events` (:class:`Attempt`, :class:`AttemptResult`,
:class:`Retry`, :class:`Poll`, :class:`GaveUp`, :class:`StateChanged`). They
carry references, idempotency keys and timings -- never a token.

A hook that raises is logged (logger ``payflow.client``) and ignored: it never
breaks a payment. Hooks run on the thread (or event loop) making the call, so
keep them quick.

>>> counts = EventCounter()
>>> client = PaymentClient(url, cid, token, hooks=[counts, log_events()])  # doctest: +SKIP
>>> counts["Retry"]                                                         # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any

from payflow.core.events import Attempt, AttemptResult, Event, GaveUp, Poll, Retry, StateChanged

__all__ = [
    "Attempt",
    "AttemptResult",
    "Event",
    "EventCounter",
    "EventLog",
    "GaveUp",
    "Hook",
    "Poll",
    "Retry",
    "StateChanged",
    "log_events",
]

#: A hook: called with each event; its return value is ignored.
Hook = Callable[[Any], object]


class EventCounter(Counter[str]):
    """A hook counting events by class name (``counts["Retry"]``)."""

    def __call__(self, event: object) -> None:
        self[type(event).__name__] += 1


class EventLog(list[Any]):
    """A hook keeping every event in a list (handy in tests and notebooks)."""

    def __call__(self, event: object) -> None:
        self.append(event)

    def of(self, kind: type) -> list[Any]:
        """The events of one class, in order."""
        return [e for e in self if isinstance(e, kind)]


def log_events(
    logger: logging.Logger | None = None, level: int = logging.INFO
) -> Callable[[object], None]:
    """A hook that logs each event at ``level`` (retries and give-ups at WARNING)."""
    log = logger or logging.getLogger("payflow.events")

    def hook(event: object) -> None:
        lvl = logging.WARNING if isinstance(event, Retry | GaveUp) else level
        if log.isEnabledFor(lvl):
            log.log(lvl, "%r", event)

    return hook
