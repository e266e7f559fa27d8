"""The sink of one order's flows: counts what the core flows did, and keeps their events.

Rule: every flow run for an order (pay, recheck, refund) reports to that order's one
:class:`FlowCounts`; it only counts and records, never decides. It is the ``sink`` of
:func:`payflow.drivers._simpy.run_flow` (``on_call``, ``on_event``), so it is on the hot
path: slotted, and nothing is allocated per event.
"""

from __future__ import annotations

from typing import Any

from payflow.core.events import Attempt, AttemptResult, Retry, repeat_kind
from payflow.core.messages import Call

__all__ = ["FlowCounts"]


class FlowCounts:
    """Provider calls, client-side timeouts and retries of one order's flows.

    ``retries`` counts the core's ``Retry`` events plus the repeats the core
    emits no ``Retry`` for (:func:`payflow.core.events.repeat_kind`): polls
    after an unanswered poll (also in ``poll_retries``) and writes sent again
    with a key already used for them (also in ``resends``). ``trace`` is the
    order's timeline (shared with :attr:`Order.trace <payflow.sim._model.Order.trace>`),
    or None when tracing is off.
    """

    __slots__ = ("calls", "keys_sent", "poll_retries", "resends", "retries", "timeouts", "trace")

    def __init__(self, trace: list[Any] | None) -> None:
        self.calls = 0
        self.timeouts = 0
        self.retries = 0
        self.poll_retries = 0
        self.resends = 0
        #: (operation, key) pairs sent so far; created on the first one that needs it
        #: (most orders only ever make keyless first attempts).
        self.keys_sent: set[tuple[str, str]] | None = None
        self.trace = trace

    def on_call(self, call: Call, now: float) -> None:
        self.calls += 1

    def on_event(self, event: Any) -> None:
        # Dispatch on the exact class: cheaper than isinstance on the hot path.
        cls = event.__class__
        if cls is AttemptResult:
            if event.outcome == "timeout":
                self.timeouts += 1
        elif cls is Retry:
            self.retries += 1
        elif cls is Attempt:
            self._count_attempt(event)
        if self.trace is not None:
            self.trace.append(event)

    def _count_attempt(self, event: Attempt) -> None:
        """Retries the core emits no ``Retry`` for: see :func:`payflow.core.events.repeat_kind`."""
        sent = self.keys_sent
        if sent is None:
            if event.idempotency_key is None and event.attempt <= 1:
                return  # the common first attempt of a keyless call: no set needed
            sent = self.keys_sent = set()
        kind = repeat_kind(event, sent)
        if kind == "poll":
            self.retries += 1
            self.poll_retries += 1
        elif kind == "resend":
            self.retries += 1
            self.resends += 1
