"""Frozen records a flow emits for hooks, logs and simulation metrics.

Drivers hand each one to the user's hooks unchanged; the simulation counts
timeouts, retries and provider calls from the same records, so a chart and a
production log describe the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Attempt", "AttemptResult", "Event", "GaveUp", "Poll", "Retry", "StateChanged"]


@dataclass(frozen=True, slots=True)
class Attempt:
    """An attempt is about to be sent (one provider call)."""

    operation: str
    reference: str
    attempt: int  # 1 for the first attempt
    idempotency_key: str | None
    timeout: float
    at: float


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What came back: ``outcome`` is "response", "timeout" or "not-sent"."""

    operation: str
    reference: str
    attempt: int
    outcome: str
    status: int | None
    at: float


@dataclass(frozen=True, slots=True)
class Retry:
    """The policy decided to retry after ``delay`` seconds."""

    operation: str
    reference: str
    attempt: int  # the attempt that failed
    delay: float
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class GaveUp:
    """The policy stopped retrying (``reason``: attempts, deadline, budget, unknown...)."""

    operation: str
    reference: str
    attempts: int
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Poll:
    """A poll answered (``state``) or did not (``state`` is None)."""

    payment_id: str
    reference: str
    state: str | None
    poll_delay_ms: int | None
    at: float


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The client's view of a payment moved from ``old`` to ``new``."""

    reference: str
    payment_id: str | None
    old: str
    new: str
    at: float


Event = Attempt | AttemptResult | Retry | GaveUp | Poll | StateChanged
