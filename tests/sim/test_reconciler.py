"""The reconciler refunds money it cannot apply through the shipped refund flow, keyed as
the flow keys it (``payflow.core._flows.refund_key``, as ``PaymentClient.refund`` would)."""

from __future__ import annotations

from payflow.core._flows import refund_key
from payflow.core.events import Attempt
from payflow.sim import get_strategy
from payflow.sim._model import Day
from payflow.sim._runner import resolve_scenario


def test_unclaimable_reported_money_is_refunded_under_the_refund_flows_own_key() -> None:
    # Recheck reports late money (refund_unclaimed=False); no lock and no paid-order check,
    # so some orders are paid twice and the second payment cannot be applied.
    strategy = get_strategy("recommended").but(
        name="reports-duplicates",
        order_lock=False,
        dedupe_paid=False,
        debounce=False,
        key_scope="attempt",
    )
    day = Day(resolve_scenario("slow-provider-day").with_orders(500), strategy, seed=1).run()
    refunds = day.ledger.snapshot(day.env.now)["refunds"]
    payment_order = {
        p["paymentId"]: p["orderId"] for p in day.ledger.snapshot(day.env.now)["payments"]
    }
    expected = {refund_key(r["paymentId"], payment_order[r["paymentId"]]) for r in refunds}
    refunded = 0
    for order in day.orders:
        trace = order.trace or []
        if not any(isinstance(e, tuple) and "cannot be applied" in e[2] for e in trace):
            continue
        keys = {
            e.idempotency_key for e in trace if isinstance(e, Attempt) and e.operation == "refund"
        }
        assert keys and keys <= expected
        refunded += 1
    assert refunded > 0  # the path is exercised
