"""payflow.sim.stories: one order's story for the timeline chart."""

from __future__ import annotations

import pandas as pd
import pytest

from payflow.core.states import MONEY_TAKEN, MONEY_TAKEN_STATES, PAYMENT_STATES, PaymentState
from payflow.sim import run, stories


@pytest.fixture(scope="module")
def naive() -> object:
    return run("slow-provider-day", "naive", seed=1, orders=300)


def test_each_unhappy_customer_is_found_and_tells_its_story(naive: object) -> None:
    orders = naive.orders.set_index("order_id")  # type: ignore[attr-defined]
    for kind in (1, 2, 3):
        order_id = stories.pick_unhappy(naive, kind)
        assert orders.loc[order_id, "unhappy_customer"] == kind
    three = naive.trace(stories.pick_unhappy(naive, 3))  # type: ignore[attr-defined]
    assert three["detail"].str.contains("nothing happens").any()


def test_timeline_has_the_plot_columns_and_starts_at_the_first_click(naive: object) -> None:
    order_id = stories.pick_unhappy(naive, 2)
    trace = naive.trace(order_id)  # type: ignore[attr-defined]
    events = stories.timeline(trace)
    assert list(events.columns) == ["t", "kind", "label"]
    assert events["t"].min() == 0.0
    assert set(events["kind"]) <= set(stories.TIMELINE_KINDS)
    assert (events["kind"] == "provider").sum() >= 2  # two payments created
    assert not events["label"].str.contains(r"[0-9a-f]{8}-[0-9a-f]{4}").any()  # ids shortened
    labelled = events[events["label"] != ""]
    assert not labelled.duplicated(["kind", "label"]).any()


def test_ledger_outcome_counts_money_taken_and_held(naive: object) -> None:
    orders = naive.orders.set_index("order_id")  # type: ignore[attr-defined]
    for kind in (2, 3):
        order_id = stories.pick_unhappy(naive, kind)
        line = stories.ledger_outcome(naive.trace(order_id))  # type: ignore[attr-defined]
        if orders.loc[order_id, "duplicate_charge"]:
            assert "money taken 2 times" in line
        else:  # a second payment held the money: a reservation is not a charge
            assert orders.loc[order_id, "duplicate_hold"]
            assert "more reservation" in line and "until" in line
    empty = pd.DataFrame({"order_id": [], "at_s": [], "kind": [], "detail": []})
    assert stories.ledger_outcome(empty) == "no payment reached the provider"
    assert stories.timeline(empty).empty


def test_unhappy_counts_and_bad_kind(naive: object) -> None:
    counts = stories.unhappy_counts({"naive": naive.orders})  # type: ignore[attr-defined]
    assert counts.loc["naive", "orders"] == 300
    assert counts.loc["naive", ["customer 1", "customer 2", "customer 3"]].min() > 0
    with pytest.raises(ValueError, match="1, 2 or 3"):
        stories.pick_unhappy(naive, 4)
    calm = run("calm-day", "recommended", seed=0, orders=50)
    with pytest.raises(LookupError):
        stories.pick_unhappy(calm, 1)


def test_client_and_provider_views_agree_on_which_states_took_money() -> None:
    """A timeline's "charge seen" reads client-view state names (``StateChanged``) against
    the provider's ``MONEY_TAKEN_STATES``: valid only while the names agree."""
    assert {s.value for s in MONEY_TAKEN} == MONEY_TAKEN_STATES
    # The client's names that differ from the provider's never mean money taken.
    client_only = {s.value for s in PaymentState} - PAYMENT_STATES
    assert client_only and not client_only & MONEY_TAKEN_STATES
