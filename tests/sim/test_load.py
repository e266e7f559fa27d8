"""The load on the provider is the scenario's, in real terms; ``orders`` is only the sample.

Two sample sizes -- one smaller than a day, one that takes several independent days --
give the same rates within three standard errors, over several seeds.
"""

from __future__ import annotations

import math

import pytest

from payflow.sim import load_scenario, run
from payflow.sim._scenarios import parse_scenario

# A small real day keeps the test quick: 300 orders over the slow day's curve.
SLOW = load_scenario("slow-provider-day").with_load(300)
SMALL, LARGE = 120, 900  # 900 = three independent days of 300
SEEDS = range(4)
RATES = (
    "duplicate_charge",
    "duplicate_hold",
    "silent_charge",
    "orphan_hold",
    "lost_sale",
    "shipped",
    "never_told_outcome",
)


def _pooled(strategy: str, orders: int) -> dict[str, tuple[float, int]]:
    counts = dict.fromkeys(RATES, 0)
    calls: list[float] = []
    n = 0
    for seed in SEEDS:
        frame = run(SLOW, strategy, seed=seed, orders=orders, trace=False).orders
        n += len(frame)
        for rate in RATES:
            counts[rate] += int(frame[rate].sum())
        calls.extend(frame["provider_calls"].astype(float))
    out = {rate: (count / n, n) for rate, count in counts.items()}
    mean = sum(calls) / n
    var = sum((c - mean) ** 2 for c in calls) / (n - 1)
    out["calls"] = (mean, n)
    out["calls_var"] = (var, n)
    return out


@pytest.mark.parametrize("strategy", ["naive", "answer-a"])
def test_rates_do_not_depend_on_the_sample_size(strategy: str) -> None:
    small, large = _pooled(strategy, SMALL), _pooled(strategy, LARGE)
    for rate in RATES:
        (p1, n1), (p2, n2) = small[rate], large[rate]
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        se = math.sqrt(max(pooled * (1 - pooled), 1e-12) * (1 / n1 + 1 / n2))
        assert abs(p1 - p2) <= 3 * se + 1e-12, (rate, p1, p2, se)
    (m1, n1), (m2, n2) = small["calls"], large["calls"]
    v1, v2 = small["calls_var"][0], large["calls_var"][0]
    se = math.sqrt(v1 / n1 + v2 / n2)
    assert abs(m1 - m2) <= 3 * se, ("calls", m1, m2, se)


def test_a_sample_larger_than_a_day_simulates_independent_days() -> None:
    result = run(SLOW, "naive", seed=0, orders=LARGE, trace=True)
    assert result.summary["simulated_orders"] == LARGE and result.summary["orders_per_day"] == 300
    assert len(result.orders) == LARGE and result.orders["order_id"].is_unique
    # Each day is the same day of the year: arrivals follow the same curve, three times over.
    assert result.provider.requests > 3 * run(SLOW, "naive", seed=0, trace=False).summary["orders"]
    assert len(result.trace(LARGE)) > 0  # an order of the third day has its own timeline
    # Day one is the seed's own day, whatever the sample.
    one_day = run(SLOW, "naive", seed=0, trace=False).orders
    first = result.orders[result.orders["order_id"].isin(one_day["order_id"])]
    assert len(first) > 0
    same = one_day.set_index("order_id").loc[first["order_id"], "provider_calls"]
    assert (same.to_numpy() == first["provider_calls"].to_numpy()).all()


def test_the_load_is_a_scenario_field() -> None:
    sc = parse_scenario({"traffic": {"orders_per_day": 5000, "orders": 600}}, "x.toml")
    assert (sc.traffic.orders, sc.traffic.day_orders) == (600, 5000)
    whole = parse_scenario({"traffic": {"orders_per_day": 5000}}, "x.toml")
    assert whole.traffic.orders == 5000  # the whole day is tracked by default
    old = parse_scenario({"traffic": {"orders": 800}}, "x.toml")
    assert old.traffic.day_orders == 800  # files without the field: orders is the load
    assert old.with_orders(50).traffic.day_orders == 800
    with pytest.raises(ValueError, match=r"traffic\.orders_per_day"):
        parse_scenario({"traffic": {"orders_per_day": 0}}, "x.toml")
