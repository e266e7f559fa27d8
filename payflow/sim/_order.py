"""One order of a simulated day, as a record: what its customer did and saw, what the shop did.

Rule: an :class:`Order` only holds facts; the customers, the backend and the reconciler
write them, :mod:`payflow.sim._metrics` reads them. What the order's flows counted
(calls, timeouts, retries) is kept apart, in its :class:`~payflow.sim._flow_counts.FlowCounts`.
"""

from __future__ import annotations

import math
from typing import Any

import simpy

from payflow.sim._flow_counts import FlowCounts

__all__ = ["Order", "note"]


class Order:
    """One order: its draws, what its customer did and saw, and what the shop did.

    ``trace`` holds core events and ``(time, kind, detail)`` tuples when
    tracing is on (None otherwise); ``counts`` is the sink its flows report to.
    """

    __slots__ = (
        "amount",
        "arrival",
        "clicks",
        "counts",
        "email_at",
        "email_gave_up_at",
        "email_patience",
        "email_promised_at",
        "feedback",
        "feedback_at",
        "flows",
        "fulfilled_at",
        "gave_up",
        "index",
        "inflight",
        "last_page",
        "left_at",
        "locked",
        "order_id",
        "outcome",
        "outcome_at",
        "patience",
        "rechecks",
        "settled",
        "submits",
        "support_contact",
        "support_draw",
        "told",
        "trace",
    )

    def __init__(
        self, index: int, arrival: float, amount: int, patience: float, trace: bool
    ) -> None:
        self.index = index
        self.order_id = f"order-{index:06d}"
        self.arrival = arrival
        self.amount = amount
        self.patience = patience
        self.clicks = 0
        self.submits = 0
        self.flows = 0
        self.rechecks = 0
        self.feedback = ""
        self.feedback_at: float | None = None
        self.last_page = ""
        self.left_at: float | None = None
        self.gave_up = False
        self.fulfilled_at: float | None = None
        self.email_at: float | None = None
        self.email_promised_at: float | None = None
        #: How long this customer waits for a promised email before giving up on the
        #: shop, and the uniform draw that decides whether they then contact support
        #: (both drawn up front from their own stream: see ``_customers``).
        self.email_patience = math.inf
        self.support_draw = 1.0
        self.email_gave_up_at: float | None = None
        self.support_contact = False
        #: When the customer first knew the final outcome (a "success"/"failed" page or
        #: the outcome email), and what their last such message said ("success"/"failed").
        self.outcome_at: float | None = None
        self.told = ""
        self.outcome = ""
        #: The pay flow running for the order (fires with the page it ends on), if any.
        self.inflight: simpy.Event | None = None
        #: Locked with no answer from the provider (``Strategy.lock_until_answer``).
        self.locked = False
        #: The outcome a status page waits for (accept-then-process only).
        self.settled: simpy.Event | None = None
        self.trace: list[Any] | None = [] if trace else None
        self.counts = FlowCounts(self.trace)


def note(order: Order, at: float, kind: str, detail: str = "") -> None:
    """Add a UI/backend entry to the order's trace (nothing when tracing is off)."""
    if order.trace is not None:
        order.trace.append((at, kind, detail))
