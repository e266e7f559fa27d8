"""Frozen records a flow emits for hooks, logs and simulation metrics.

Drivers hand each one to the user's hooks unchanged; the simulation counts
timeouts, retries and provider calls from the same records, so a chart and a
production log describe the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Attempt",
    "AttemptResult",
    "Event",
    "GaveUp",
    "OperatorAsked",
    "Poll",
    "Reauthenticated",
    "Retry",
    "StateChanged",
    "repeat_kind",
]


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


@dataclass(frozen=True, slots=True)
class Reauthenticated:
    """A 401 was answered with fresh credentials; the attempt is sent again.

    The re-send is part of attempt ``attempt`` (no new :class:`Attempt`, no
    :class:`Retry`): it counts neither as a retry nor against the retry budget.
    """

    operation: str
    reference: str
    attempt: int
    at: float


@dataclass(frozen=True, slots=True)
class OperatorAsked:
    """The operator was asked about a pending payment; ``give_up`` is the answer."""

    reference: str
    payment_id: str
    waited_s: float
    give_up: bool
    at: float


Event = (
    Attempt | AttemptResult | Retry | GaveUp | Poll | StateChanged | Reauthenticated | OperatorAsked
)


def repeat_kind(event: Attempt, keys_sent: set[tuple[str, str]]) -> str | None:
    """Whether an attempt repeats a logical operation the core emits no ``Retry`` for.

    DESIGN counts as retries "calls beyond the first for each logical operation".
    Attempts after the first of one ``call`` come with a :class:`Retry` event;
    two more kinds of repeat do not:

    * ``"poll"`` -- ``poll_until_settled`` polls again after an unanswered poll
      (its attempt number counts unanswered polls in a row, so > 1 is a repeat);
    * ``"resend"`` -- a write sent again with an idempotency key already sent for
      the same operation (a recheck replaying a create, a repeat submit under a
      per-order key).

    ``keys_sent`` is the caller's per-order memory of (operation, key) pairs; it
    is updated. Returns ``None`` for a first attempt. The simulation and
    :mod:`payflow.compare` both count with this one rule.
    """
    if event.attempt > 1:
        return "poll" if event.operation == "poll" else None
    key = event.idempotency_key
    if key is None:
        return None
    op_key = (event.operation, key)
    if op_key in keys_sent:
        return "resend"
    keys_sent.add(op_key)
    return None
