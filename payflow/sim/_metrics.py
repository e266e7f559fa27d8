"""DESIGN.md's metrics, per order and per run, from the ledger's ground truth.

Taken at the end of the run (after the settling window), per order:

==================  ==========================================================
column              meaning
==================  ==========================================================
charged             payments of the order that took money and were not
                    refunded (``reserved``/``captured`` in the ledger)
duplicate_charge    ``charged > 1``
silent_charge       charged, the order shipped, and the customer was given no
                    outcome: they gave up without a definite message on the
                    page, or were promised an email that was never sent
                    (unhappy customer 1)
orphan_charge       charged, the order not shipped
lost_sale           the customer gave up and nothing is charged
timeouts            client-side timeouts of its provider calls
retries             calls beyond the first of each logical operation: the
                    core's ``Retry`` events, plus each poll that repeats an
                    unanswered poll (``poll_retries``), plus each write sent
                    again with a key the order already used for it
                    (``resends``: rechecks replaying a create, repeat submits
                    under a per-order key)
poll_retries        polls sent because the previous poll got no answer (a
                    timeout, a refused connection or a non-2xx), also in
                    ``retries``
provider_calls      every call for the order, polls and rechecks included
feedback_s          first click to a definite message (success, failure, or
                    "we will email you") on the page or by email; NaN if none
refunds             refunds the shop's reconciliation issued for it
unresolved          the shop's journal still holds it, or a payment of it is
                    still waiting for the payer
free_order          shipped, but nothing is charged (a refund too many)
email_promised_s    first click to "we will email you" on the page; NaN if
                    never promised
email_sent_s        first click to the outcome email; NaN if none was sent
email_unsent        promised an email, and none was sent by the end of the
                    run (an unkept promise; with money taken and the order
                    shipped it is also a silent charge)
unhappy_1           unhappy customer 1: ``silent_charge``
unhappy_2           unhappy customer 2: charged twice after one submit
                    (``duplicate_charge`` or ``duplicate_hold``, and
                    ``submits == 1``: retries)
unhappy_3           unhappy customer 3: charged twice after several submits
                    (``duplicate_charge`` or ``duplicate_hold``, and
                    ``submits > 1``)
unhappy_customer    one label, for compatibility: 1, 2, 3 or 0 (none). An
                    order can be customer 1 and 2 (or 1 and 3) at once -- a
                    silent double charge; the label then says 1 (silent
                    takes priority), so count 2 and 3 with ``unhappy_2`` /
                    ``unhappy_3``
==================  ==========================================================

Event times (``*_at_s``) are seconds since midnight of the simulated day.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from payflow.core.states import PaymentState, from_provider
from payflow.core.states import charged as is_charged
from payflow.core.states import held as is_held
from payflow.sim._model import Day, Order

__all__ = ["HARM_FLAGS", "ORDER_COLUMNS", "order_frame", "summarize_run", "trace_frame"]

#: The per-order flags that count as harm to a customer (an order is harmed if any is set).
HARM_FLAGS = (
    "duplicate_charge",
    "duplicate_hold",
    "silent_charge",
    "told_failed_but_charged",
    "orphan_charge",
)

ORDER_COLUMNS = (
    "order_id",
    "arrival_s",
    "amount",
    "patience_s",
    "clicks",
    "submits",
    "pay_flows",
    "rechecks",
    "payments",
    "charged",
    "refunds",
    "refunded_amount",
    "duplicate_charge",
    "held",
    "double_hold_s",
    "duplicate_hold",
    "told_failed_but_charged",
    "orphan_hold",
    "silent_charge",
    "orphan_charge",
    "lost_sale",
    "cost",
    "unresolved",
    "free_order",
    "unhappy_customer",
    "unhappy_1",
    "unhappy_2",
    "unhappy_3",
    "email_unsent",
    "fulfilled",
    "gave_up",
    "outcome",
    "feedback",
    "feedback_s",
    "outcome_s",
    "never_told_outcome",
    "told",
    "shipped",
    "email_gave_up",
    "support_contact",
    "last_page",
    "timeouts",
    "retries",
    "poll_retries",
    "resends",
    "provider_calls",
    "email_promised_s",
    "email_sent_s",
    "feedback_at_s",
    "left_at_s",
    "fulfilled_at_s",
    "email_at_s",
    "email_promised_at_s",
    "outcome_at_s",
    "email_gave_up_at_s",
)


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def order_frame(day: Day) -> pd.DataFrame:
    """One row per order, every metric a column (see the module docs)."""
    snapshot = day.ledger.snapshot(day.env.now)
    payments_of: dict[str, list[dict[str, Any]]] = defaultdict(list)
    order_of_payment: dict[str, str] = {}
    for p in snapshot["payments"]:
        payments_of[p["orderId"]].append(p)
        order_of_payment[p["paymentId"]] = p["orderId"]
    refunds_of: dict[str, int] = defaultdict(int)
    refund_times: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for r in snapshot["refunds"]:
        refunds_of[order_of_payment.get(r["paymentId"], "")] += 1
        refund_times[r["paymentId"]].append((float(r["createdAt"]), int(r["amount"])))
    in_journal = {record.reference for record in day.journal.records.values()}
    rows: dict[str, list[Any]] = {name: [] for name in ORDER_COLUMNS}
    notice = day.scenario.customers.hold_notice_s
    costs = day.scenario.costs
    for order in day.orders:
        counts = order.counts
        payments = payments_of.get(order.order_id, [])
        money = money_of(payments, refund_times)
        charged = money.charged
        refunded_amount = money.refunded_amount
        waiting = money.waiting
        fulfilled = order.fulfilled_at is not None
        first = _first(order.feedback_at, order.email_at)
        unsent = order.email_promised_at is not None and order.email_at is None
        silent = charged > 0 and fulfilled and (order.gave_up or unsent)
        duplicate = charged > 1
        duplicate_hold = not duplicate and money.double_hold_s > notice
        told_failed = order.told == "failed" and charged > 0
        orphan_hold = charged == 0 and not fulfilled and money.longest_hold_s > notice
        # "Charged twice" as the customer sees it: two captures, or a second hold that
        # lasted long enough to notice (both show in a banking app).
        twice = duplicate or duplicate_hold
        unhappy_2 = twice and order.submits == 1
        unhappy_3 = twice and order.submits > 1
        # Silent takes priority in the one-label column; the booleans do not hide.
        unhappy = 1 if silent else (2 if unhappy_2 else (3 if unhappy_3 else 0))
        orphan = charged > 0 and not fulfilled
        lost = order.gave_up and charged == 0
        contact = duplicate or orphan or silent or told_failed or order.support_contact
        hand_refunds = charged if orphan else (charged - 1 if duplicate else 0)
        cost = (
            costs.provider_call * counts.calls
            + costs.refund * (refunds_of.get(order.order_id, 0) + hand_refunds)
            + costs.support_contact * contact
            + costs.held_reservation * (duplicate_hold or orphan_hold)
            + (order.amount * costs.lost_sale_margin_pct // 100 if lost else 0)
        )
        values = {
            "order_id": order.order_id,
            "arrival_s": order.arrival,
            "amount": order.amount,
            "patience_s": order.patience,
            "clicks": order.clicks,
            "submits": order.submits,
            "pay_flows": order.flows,
            "rechecks": order.rechecks,
            "payments": len(payments),
            "charged": charged,
            "refunds": refunds_of.get(order.order_id, 0),
            "refunded_amount": refunded_amount,
            "duplicate_charge": duplicate,
            "held": money.held,
            "double_hold_s": money.double_hold_s,
            "duplicate_hold": duplicate_hold,
            "told_failed_but_charged": told_failed,
            "orphan_hold": orphan_hold,
            "silent_charge": silent,
            "orphan_charge": orphan,
            "lost_sale": lost,
            "cost": cost,
            "unresolved": waiting or order.order_id in in_journal,
            "free_order": fulfilled and charged == 0,
            "unhappy_customer": unhappy,
            "unhappy_1": silent,
            "unhappy_2": unhappy_2,
            "unhappy_3": unhappy_3,
            "email_unsent": unsent,
            "fulfilled": fulfilled,
            "gave_up": order.gave_up,
            "outcome": order.outcome or "none",
            "feedback": order.feedback or ("email" if order.email_at is not None else "none"),
            "feedback_s": math.nan if first is None else first - order.arrival,
            "outcome_s": _since(order.outcome_at, order.arrival),
            "never_told_outcome": order.outcome_at is None,
            "told": order.told or "none",
            "shipped": fulfilled and charged == 1,
            "email_gave_up": order.email_gave_up_at is not None,
            "support_contact": order.support_contact,
            "last_page": order.last_page or "none",
            "timeouts": counts.timeouts,
            "retries": counts.retries,
            "poll_retries": counts.poll_retries,
            "resends": counts.resends,
            "provider_calls": counts.calls,
            "email_promised_s": _since(order.email_promised_at, order.arrival),
            "email_sent_s": _since(order.email_at, order.arrival),
            "feedback_at_s": _nan(first),
            "left_at_s": _nan(order.left_at),
            "fulfilled_at_s": _nan(order.fulfilled_at),
            "email_at_s": _nan(order.email_at),
            "email_promised_at_s": _nan(order.email_promised_at),
            "outcome_at_s": _nan(order.outcome_at),
            "email_gave_up_at_s": _nan(order.email_gave_up_at),
        }
        for name, value in values.items():
            rows[name].append(value)
    return pd.DataFrame(rows, columns=list(ORDER_COLUMNS))


@dataclass(frozen=True, slots=True)
class Money:
    """What an order's payments did to the customer's money (see :func:`money_of`)."""

    charged: int
    held: int
    double_hold_s: float
    longest_hold_s: float
    refunded_amount: int
    waiting: bool


def _released_at(limit: int, refunds: list[tuple[float, int]]) -> float:
    """When refunds first add up to ``limit`` (inf if they never do)."""
    total = 0
    for at, amount in sorted(refunds):
        total += amount
        if total >= limit:
            return at
    return math.inf


def money_of(
    payments: list[dict[str, Any]], refund_times: Mapping[str, list[tuple[float, int]]]
) -> Money:
    """An order's money from the ledger's snapshot of its payments.

    ``charged``: payments *captured* and not refunded in full -- money taken and
    kept (a reservation is not a charge: uncaptured, it is released when it
    expires). ``held``: payments still reserved at the end of the run (tail-settled:
    nobody captures them later, so they expire at ``expiresAt``).
    ``double_hold_s``: the longest stretch of time during which two or more
    payments held the customer's money at once (reserved or captured, until
    refunded in full, released by expiry, or forever if kept);
    ``longest_hold_s``: the longest any one of them held it. ``waiting``: a
    payment still waits for the payer.
    """
    charged = held = refunded_amount = 0
    waiting = False
    intervals: list[tuple[float, float]] = []
    for p in payments:
        state = p["state"]
        refunded_amount += p["refundedAmount"]
        refunds = list(refund_times.get(p["paymentId"], ()))
        if from_provider(state) is PaymentState.PENDING:
            waiting = True
        if is_charged(state, p["refundedAmount"], p["capturedAmount"]):
            charged += 1
        elif is_held(state, p["refundedAmount"], p["amount"]):
            held += 1
        start = p.get("reservedAt")
        if start is None:
            continue
        if p.get("capturedAt") is not None:
            end = _released_at(p["capturedAmount"], refunds)
        else:
            expires = p.get("expiresAt")
            end = min(_released_at(p["amount"], refunds), math.inf if expires is None else expires)
        if end > start:
            intervals.append((float(start), end))
    longest = max((end - start for start, end in intervals), default=0.0)
    return Money(charged, held, _longest_overlap(intervals), longest, refunded_amount, waiting)


def _longest_overlap(intervals: list[tuple[float, float]]) -> float:
    """The longest stretch covered by two or more of ``intervals`` (half-open) at once."""
    if len(intervals) < 2:
        return 0.0
    # Ends sort before starts at the same instant: touching intervals do not overlap.
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    depth = 0
    since = 0.0
    longest = 0.0
    for at, step in events:
        before = depth
        depth += step
        if before < 2 <= depth:
            since = at
        elif before >= 2 > depth:
            longest = max(longest, at - since)
    if depth >= 2:  # pragma: no cover - every interval ends, if only at inf
        longest = math.inf
    return longest


def _since(at: float | None, start: float) -> float:
    return math.nan if at is None else at - start


def _first(*times: float | None) -> float | None:
    present = [t for t in times if t is not None]
    return min(present) if present else None


def _rate(count: int, n: int) -> float:
    return count / n if n else 0.0


def _percentile(values: np.ndarray[Any, Any], q: float) -> float | None:
    if values.size == 0:
        return None
    return round(float(np.percentile(values, q)), 3)


def _percentile_with_never(told: np.ndarray[Any, Any], never: int, q: float) -> float | None:
    """The ``q``-th percentile of all orders' times, the ``never`` untold ones counted as
    infinitely late: ``inf`` when the percentile falls among them, ``None`` with no orders."""
    n = told.size + never
    if n == 0:
        return None
    rank = q / 100.0 * (n - 1)
    if math.ceil(rank) >= told.size:
        return math.inf
    values = np.sort(told)
    lo = math.floor(rank)
    frac = rank - lo
    value = values[lo] + (values[math.ceil(rank)] - values[lo]) * frac
    return round(float(value), 3)


def summarize_run(
    frame: pd.DataFrame, *, scenario: str, strategy: str, seed: int
) -> dict[str, Any]:
    """One run's summary from its order frame: the contract keys, each rate with its
    count, plus extras (:func:`payflow.sim.sweep.pool_seeds` pools several runs)."""
    n = len(frame)
    out: dict[str, Any] = {"scenario": scenario, "strategy": strategy, "seed": seed, "orders": n}
    for count_key, rate_key, column in (
        ("duplicate_charges", "duplicate_charge_rate", "duplicate_charge"),
        ("duplicate_holds", "duplicate_hold_rate", "duplicate_hold"),
        ("told_failed_but_charged", "told_failed_but_charged_rate", "told_failed_but_charged"),
        ("silent_charges", "silent_charge_rate", "silent_charge"),
        ("orphan_charges", "orphan_charge_rate", "orphan_charge"),
        ("orphan_holds", "orphan_hold_rate", "orphan_hold"),
        ("lost_sales", "lost_sale_rate", "lost_sale"),
        ("free_orders", "free_order_rate", "free_order"),
    ):
        count = int(frame[column].sum())
        out[count_key] = count
        out[rate_key] = _rate(count, n)
    # Harmed: an order with at least one harm (counted once however many it has).
    harmed = int(frame[list(HARM_FLAGS)].astype(bool).any(axis=1).sum() if n else 0)
    out["harmed"] = harmed
    out["harmed_rate"] = _rate(harmed, n)
    for kind in (1, 2, 3):
        out[f"unhappy_{kind}"] = int(frame[f"unhappy_{kind}"].sum())
    out["emails_promised"] = int(frame["email_promised_s"].notna().sum())
    out["emails_sent"] = int(frame["email_sent_s"].notna().sum())
    # Unkept promises: "we will email you" on the page, and no email by the end of the run.
    out["emails_unsent"] = int(frame["email_unsent"].sum())
    out["emails_unsent_rate"] = _rate(out["emails_unsent"], n)
    for metric in ("timeouts", "retries", "poll_retries", "resends", "provider_calls"):
        total = int(frame[metric].sum())
        out[metric] = total
        out[f"{metric}_per_order"] = _rate(total, n)
    feedback = frame["feedback_s"].to_numpy(dtype=float)
    feedback = feedback[~np.isnan(feedback)]
    out["feedback_p50_s"] = _percentile(feedback, 50)
    out["feedback_p95_s"] = _percentile(feedback, 95)
    out["feedback_p99_s"] = _percentile(feedback, 99)
    out["no_feedback"] = int(n - feedback.size)
    out["no_feedback_rate"] = _rate(n - feedback.size, n)
    outcome = frame["outcome_s"].to_numpy(dtype=float)
    told = outcome[~np.isnan(outcome)]
    never = int(n - told.size)
    for q in (50, 95, 99):
        out[f"outcome_p{q}_s"] = _percentile_with_never(told, never, q)
    out["never_told_outcome"] = never
    out["never_told_outcome_rate"] = _rate(never, n)
    for metric in ("shipped", "email_gave_up", "support_contact"):
        count = int(frame[metric].sum())
        out[metric] = count
        out[f"{metric}_rate"] = _rate(count, n)
    out["refunds"] = int(frame["refunds"].sum())
    out["unresolved"] = int(frame["unresolved"].sum())
    out["unresolved_rate"] = _rate(out["unresolved"], n)
    fulfilled = int(frame["fulfilled"].sum())
    out["fulfilled"] = fulfilled
    out["fulfilled_rate"] = _rate(fulfilled, n)
    out["payments"] = int(frame["payments"].sum())
    # Money: integer minor units of the scenario's currency; the mean rounded to a unit.
    cost_total = int(frame["cost"].sum())
    out["cost_total"] = cost_total
    out["cost_per_order"] = round(cost_total / n) if n else 0
    return out


_EVENT_KINDS = {
    "Attempt": "call",
    "AttemptResult": "answer",
    "Retry": "retry",
    "GaveUp": "gave up",
    "Poll": "poll",
    "StateChanged": "state",
}


def _describe(event: Any) -> tuple[str, str]:
    name = type(event).__name__
    kind = _EVENT_KINDS.get(name, name)
    if name == "Attempt":
        return kind, f"{event.operation} #{event.attempt} (timeout {event.timeout:g} s)"
    if name == "AttemptResult":
        status = f" {event.status}" if event.status is not None else ""
        return ("timeout" if event.outcome == "timeout" else kind), (
            f"{event.operation} #{event.attempt}: {event.outcome}{status}"
        )
    if name == "Retry":
        return kind, f"{event.operation} after {event.delay:.2f} s ({event.reason})"
    if name == "GaveUp":
        return kind, f"{event.operation} after {event.attempts} attempts ({event.reason})"
    if name == "Poll":
        return kind, f"{event.state or 'no answer'} (next in {event.poll_delay_ms} ms)"
    if name == "StateChanged":
        return kind, f"{event.old} -> {event.new}"
    return kind, repr(event)  # pragma: no cover


def trace_frame(order: Order) -> pd.DataFrame:
    """An order's timeline: ``at_s`` (seconds since midnight), ``kind``, ``detail``.

    Kinds: customer, page, backend, email, recheck, provider (the ledger
    applied something), call, answer, timeout, retry, gave up, poll, state
    (:meth:`payflow.sim.Result.trace` adds ``ledger`` rows: each payment's
    final state at the end of the run).
    """
    rows: list[tuple[float, str, str]] = []
    for entry in order.trace or ():
        if isinstance(entry, tuple):
            rows.append(entry)
        else:
            kind, detail = _describe(entry)
            rows.append((entry.at, kind, detail))
    frame = pd.DataFrame(rows, columns=["at_s", "kind", "detail"])
    frame.insert(0, "order_id", order.order_id)
    return frame.sort_values("at_s", kind="stable").reset_index(drop=True)
