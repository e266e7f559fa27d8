"""Each harm label, built from scripted orders: a real ledger driven call by call and a
customer story written out, then the run's own metric code (``order_frame``).

Also: reservations expire, in the ledger and in the SimPy model alike.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from payflow.core.messages import Request
from payflow.drivers._simpy import SimJournal
from payflow.provider.ledger import DEFAULT_RESERVATION_EXPIRY_S, Ledger, PayerModel
from payflow.sim import get_strategy, load_scenario, run
from payflow.sim._metrics import order_frame, summarize_run
from payflow.sim._model import Order

HOUR = 3600.0
APPROVE = PayerModel(approve_probability=1.0, decide_after_s=(1.0, 1.0), expire_after_s=300.0)


class Script:
    """A ledger and the orders of one scripted day."""

    def __init__(self, expiry_s: float | None = DEFAULT_RESERVATION_EXPIRY_S) -> None:
        self.ledger = Ledger(random.Random(0), APPROVE, reservation_expiry_s=expiry_s)
        self.orders: list[Order] = []
        self._keys = 0

    def order(self, *, arrival: float = 0.0) -> Order:
        order = Order(len(self.orders) + 1, arrival, 10_000, 30.0, trace=False)
        self.orders.append(order)
        return order

    def pay(self, order: Order, at: float) -> str:
        """A create at ``at`` (the payer approves 1 s later); returns the payment id."""
        self._keys += 1
        body = {"orderId": order.order_id, "amount": order.amount, "currency": "DKK"}
        r = self.ledger.handle("shop", Request("POST", "/v10/payments", body, f"k{self._keys}"), at)
        assert r.status == 201
        return str(r.body["paymentId"])

    def capture(self, payment_id: str, at: float) -> int:
        path = f"/v10/payments/{payment_id}/capture"
        return self.ledger.handle("shop", Request("POST", path, None), at).status

    def refund(self, order: Order, payment_id: str, at: float) -> int:
        self._keys += 1
        body = {"paymentId": payment_id, "amount": order.amount, "reference": order.order_id}
        request = Request("POST", "/v10/refunds", body, f"k{self._keys}")
        return self.ledger.handle("shop", request, at).status

    def frame(self, end: float, hold_notice_s: float = HOUR) -> pd.DataFrame:
        scenario = replace(
            load_scenario("calm-day"),
            customers=replace(load_scenario("calm-day").customers, hold_notice_s=hold_notice_s),
        )
        day: Any = SimpleNamespace(
            ledger=self.ledger,
            journal=SimJournal(),
            orders=self.orders,
            scenario=scenario,
            env=SimpleNamespace(now=end),
        )
        return order_frame(day).set_index("order_id")


def _shown(order: Order, message: str, at: float) -> None:
    """The customer saw ``message`` ("success"/"failed") on the page or in an email."""
    order.told = message
    if order.outcome_at is None:
        order.outcome_at = at
    if order.feedback_at is None:
        order.feedback_at = at
        order.feedback = message


def _shipped(order: Order, at: float) -> None:
    order.fulfilled_at = at
    order.outcome = "paid"


def test_double_capture_is_a_duplicate_charge_and_not_shipped_on_money_taken_once() -> None:
    s = Script()
    order = s.order()
    for at in (0.0, 10.0):
        pid = s.pay(order, at)
        assert s.capture(pid, at + 2.0) == 200
    _shipped(order, 12.0)
    _shown(order, "success", 12.0)
    row = s.frame(end=10 * HOUR).loc[order.order_id]
    assert row["charged"] == 2 and bool(row["duplicate_charge"])
    assert not row["duplicate_hold"]  # counted once, as the worse harm
    assert not row["shipped"] and bool(row["fulfilled"])
    # Refunding one of them undoes the duplicate charge; the hour-long double hold stays.
    s2 = Script()
    order2 = s2.order()
    first = s2.pay(order2, 0.0)
    second = s2.pay(order2, 10.0)
    s2.capture(first, 2.0)
    s2.capture(second, 12.0)
    assert s2.refund(order2, second, 12.0 + 2 * HOUR) == 201
    _shipped(order2, 12.0)
    row2 = s2.frame(end=10 * HOUR).loc[order2.order_id]
    assert row2["charged"] == 1 and not row2["duplicate_charge"]
    # The second payment was reserved at 11 s and refunded at 2 h + 12 s.
    assert bool(row2["duplicate_hold"]) and row2["double_hold_s"] == pytest.approx(2 * HOUR + 1.0)
    assert bool(row2["shipped"])


def test_an_extra_reservation_held_past_the_threshold_is_a_duplicate_hold() -> None:
    s = Script(expiry_s=DEFAULT_RESERVATION_EXPIRY_S)
    held_long, released_soon = s.order(), s.order()
    for order in (held_long, released_soon):
        pid = s.pay(order, 0.0)
        s.capture(pid, 2.0)
        extra = s.pay(order, 5.0)  # approved at 6 s, never captured
        _shipped(order, 2.0)
        _shown(order, "success", 2.0)
        if order is released_soon:
            assert s.refund(order, extra, 6.0 + 600.0) == 201  # released after 10 minutes
    frame = s.frame(end=28 * HOUR)
    long_row, soon_row = frame.loc[held_long.order_id], frame.loc[released_soon.order_id]
    # Tail-settled: the uncaptured reservation holds the money until it expires.
    assert long_row["held"] == 1 and long_row["charged"] == 1
    # From its reservation at 6 s until it expires.
    assert long_row["double_hold_s"] == pytest.approx(DEFAULT_RESERVATION_EXPIRY_S)
    assert bool(long_row["duplicate_hold"]) and not long_row["duplicate_charge"]
    assert soon_row["double_hold_s"] == pytest.approx(600.0)
    assert not soon_row["duplicate_hold"]
    # The threshold is the scenario's: a stricter one catches the ten minutes too.
    assert bool(
        s.frame(end=28 * HOUR, hold_notice_s=300.0).loc[released_soon.order_id]["duplicate_hold"]
    )


def test_shipped_on_money_taken_with_no_outcome_before_giving_up_is_silent() -> None:
    s = Script()
    order = s.order()
    s.capture(s.pay(order, 0.0), 2.0)
    order.gave_up = True  # left the page with nothing on it at 30 s
    order.left_at = 30.0
    _shipped(order, 45.0)
    row = s.frame(end=HOUR).loc[order.order_id]
    assert bool(row["silent_charge"]) and bool(row["shipped"])
    assert bool(row["never_told_outcome"]) and math.isnan(row["outcome_s"])
    assert not row["orphan_charge"] and not row["lost_sale"]


def test_money_taken_and_not_shipped_is_an_orphan_but_an_expired_hold_is_not() -> None:
    s = Script(expiry_s=HOUR)
    captured, reserved = s.order(), s.order()
    s.capture(s.pay(captured, 0.0), 2.0)
    s.pay(reserved, 0.0)  # approved, never captured: released after an hour
    for order in (captured, reserved):
        order.gave_up = True
        order.left_at = 30.0
    frame = s.frame(end=2 * HOUR)
    assert bool(frame.loc[captured.order_id, "orphan_charge"])
    assert frame.loc[reserved.order_id, "charged"] == 0
    assert frame.loc[reserved.order_id, "held"] == 0  # expired by the end of the run
    assert not frame.loc[reserved.order_id, "orphan_charge"]
    assert bool(frame.loc[reserved.order_id, "lost_sale"])


def test_told_failed_while_another_payment_was_taken_and_kept() -> None:
    s = Script()
    order = s.order()
    s.capture(s.pay(order, 0.0), 2.0)  # the first submit's payment, shipped
    _shipped(order, 2.0)
    _shown(order, "failed", 40.0)  # the page answers the latest submit: declined
    row = s.frame(end=HOUR).loc[order.order_id]
    assert bool(row["told_failed_but_charged"]) and row["told"] == "failed"
    assert not row["silent_charge"] and not row["duplicate_charge"]
    # Told "success" last instead: no such harm.
    s2 = Script()
    ok = s2.order()
    s2.capture(s2.pay(ok, 0.0), 2.0)
    _shipped(ok, 2.0)
    _shown(ok, "failed", 1.0)
    _shown(ok, "success", 3.0)
    assert not s2.frame(end=HOUR).loc[ok.order_id]["told_failed_but_charged"]


def test_never_told_orders_count_in_the_outcome_percentiles() -> None:
    s = Script()
    orders = [s.order(arrival=float(i)) for i in range(20)]
    for i, order in enumerate(orders[:18]):
        _shown(order, "success", order.arrival + 10.0 * (i + 1))
    orders[18].email_promised_at = 18.05  # "we will email you" is a promise, not the outcome
    orders[18].feedback_at, orders[18].feedback = 18.05, "email"
    frame = s.frame(end=HOUR).reset_index()
    summary = summarize_run(frame, scenario="x", strategy="y", seed=0)
    assert summary["never_told_outcome"] == 2 and summary["never_told_outcome_rate"] == 0.1
    assert summary["outcome_p50_s"] == pytest.approx(105.0)  # rank 9.5 of 20: between 100 and 110
    assert summary["outcome_p95_s"] == math.inf  # beyond the 18 who were told
    assert summary["feedback_p95_s"] is not None and math.isfinite(summary["feedback_p95_s"])


# ------------------------------------------------------------------ expiry
def test_reservations_expire_in_the_ledger() -> None:
    s = Script(expiry_s=100.0)
    order = s.order()
    kept, lapsed = s.pay(order, 0.0), s.pay(order, 0.0)
    assert s.capture(kept, 50.0) == 200
    before = {p["paymentId"]: p for p in s.ledger.snapshot(100.9)["payments"]}
    assert before[lapsed]["state"] == "reserved"
    assert before[lapsed]["reservedAt"] == 1.0 and before[lapsed]["expiresAt"] == 101.0
    after = {p["paymentId"]: p for p in s.ledger.snapshot(101.0)["payments"]}
    assert after[lapsed]["state"] == "expired"
    assert after[kept]["state"] == "captured" and after[kept]["expiresAt"] is None
    assert s.capture(lapsed, 102.0) == 409  # an expired reservation cannot be captured
    assert s.refund(order, lapsed, 102.0) == 409
    # The default is the documented provider period, and None never expires.
    assert Ledger(random.Random(0)).reservation_expiry_s == DEFAULT_RESERVATION_EXPIRY_S
    forever = Script(expiry_s=None)
    pid = forever.pay(forever.order(), 0.0)
    assert forever.ledger.snapshot(1e9)["payments"][0]["state"] == "reserved"
    assert forever.capture(pid, 1e9) == 200
    with pytest.raises(ValueError, match="reservation_expiry_s"):
        Ledger(random.Random(0), reservation_expiry_s=0.0)


def test_reservations_expire_in_the_simpy_model() -> None:
    # A shop that never captures: every approved payment stays a reservation.
    rec = get_strategy("recommended")
    holder = rec.but(name="never-captures", policy=replace(rec.policy, capture=False))
    scenario = load_scenario("calm-day")
    short = replace(scenario, reservation_expiry_s=600.0)
    for sc, expected in ((short, "expired"), (scenario, "reserved")):
        result = run(sc, holder, seed=0, orders=40)
        day = result._day
        assert day is not None
        approved = [
            p for p in day.ledger.snapshot(day.env.now)["payments"] if p["reservedAt"] is not None
        ]
        assert approved and {p["state"] for p in approved} == {expected}
        frame = result.orders
        assert (frame["charged"] == 0).all()  # a reservation is not a charge
        assert (frame["held"] > 0).any() == (expected == "reserved")


def test_the_expiry_is_a_scenario_field() -> None:
    from payflow.sim import parse_scenario

    sc = parse_scenario({"provider": {"reservation_expiry_s": 1209600}}, "x.toml")
    assert sc.reservation_expiry_s == 14 * 86_400.0
    assert load_scenario("calm-day").reservation_expiry_s == DEFAULT_RESERVATION_EXPIRY_S
    with pytest.raises(ValueError, match=r"provider\.reservation_expiry_s"):
        parse_scenario({"provider": {"reservation_expiry_s": -1}}, "x.toml")


# ------------------------------------------------------------------ cost
def test_cost_per_order_prices_each_harm_from_the_scenario() -> None:
    s = Script()
    clean, double, lost = s.order(), s.order(), s.order()
    s.capture(s.pay(clean, 0.0), 2.0)
    _shipped(clean, 2.0)
    _shown(clean, "success", 2.0)
    for at in (0.0, 10.0):
        s.capture(s.pay(double, at), at + 2.0)
    _shipped(double, 12.0)
    _shown(double, "success", 12.0)
    lost.gave_up = True
    clean.counts.calls, double.counts.calls, lost.counts.calls = 4, 9, 3
    frame = s.frame(end=HOUR)
    costs = load_scenario("calm-day").costs
    assert frame.loc[clean.order_id, "cost"] == 4 * costs.provider_call
    # A double capture: a refund by hand and a support contact, plus its calls.
    assert frame.loc[double.order_id, "cost"] == (
        9 * costs.provider_call + costs.refund + costs.support_contact
    )
    assert frame.loc[lost.order_id, "cost"] == (
        3 * costs.provider_call + lost.amount * costs.lost_sale_margin_pct // 100
    )
    summary = summarize_run(frame.reset_index(), scenario="x", strategy="y", seed=0)
    assert summary["cost_total"] == int(frame["cost"].sum())
    assert isinstance(summary["cost_per_order"], int)
    assert summary["cost_per_order"] == round(summary["cost_total"] / 3)


def test_prices_are_scenario_fields_in_integer_minor_units() -> None:
    from payflow.sim import parse_scenario

    sc = parse_scenario({"costs": {"support_contact": 12000, "provider_call": 0}}, "x.toml")
    assert (sc.costs.support_contact, sc.costs.provider_call, sc.costs.refund) == (12000, 0, 2500)
    for bad in ({"refund": 12.5}, {"refund": -1}, {"lost_sale_margin_pct": 101}, {"tip": 1}):
        with pytest.raises(ValueError, match=r"costs\."):
            parse_scenario({"costs": bad}, "x.toml")
