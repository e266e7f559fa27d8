"""payflow.sim.hourly: metrics by the hour the order arrived."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from payflow.sim import hourly, run
from payflow.sim.sweep import SerialExecutor, pool_seeds, sweep


def test_hour_counts_add_up_to_the_day() -> None:
    result = run("slow-provider-day", "naive", seed=2, orders=200, trace=False)
    counts = hourly.hour_counts(result.orders)
    assert len(counts) == 24 and list(counts["hour"]) == list(range(24))
    assert counts["orders"].sum() == 200
    assert counts["duplicate_charges"].sum() == result.summary["duplicate_charges"]
    assert counts["silent_charges"].sum() == result.summary["silent_charges"]
    assert counts["provider_calls"].sum() == result.summary["provider_calls"]
    # the slow afternoon is where the duplicates are
    assert counts.loc[counts["hour"].between(10, 17), "duplicate_charges"].sum() > 0
    assert counts.loc[counts["hour"] < 8, "duplicate_charges"].sum() == 0


def test_pool_hours_matches_pool_seeds_for_one_bin_per_day() -> None:
    runs, counts = hourly.sweep_hourly(
        "slow-provider-day", ["naive", "recommended"], [0, 1], SerialExecutor(),
        orders=120, bin_s=86_400.0,
    )  # fmt: skip
    pooled = hourly.pool_hours(counts).set_index("strategy")
    whole = pool_seeds(runs).set_index("strategy")
    for strategy in ("naive", "recommended"):
        for rate in ("duplicate_charge_rate", "silent_charge_rate", "orphan_charge_rate"):
            assert pooled.loc[strategy, rate] == pytest.approx(whole.loc[strategy, rate])
            assert pooled.loc[strategy, f"{rate}_low"] == pytest.approx(
                whole.loc[strategy, f"{rate}_low"]
            )
        assert pooled.loc[strategy, "provider_calls_per_order"] == pytest.approx(
            runs[runs["strategy"] == strategy]["provider_calls"].sum() / 240
        )


def test_sweep_hourly_runs_equal_sweep() -> None:
    runs, counts = hourly.sweep_hourly("calm-day", "naive", [3], SerialExecutor(), orders=60)
    expected = sweep("calm-day", "naive", [3], SerialExecutor(), orders=60)
    pd.testing.assert_frame_equal(runs, expected)
    assert set(counts.columns) >= {"scenario", "strategy", "seed", "hour", "orders"}


def test_empty_hours_have_no_rate_and_bad_arguments() -> None:
    orders = pd.DataFrame(
        {
            "arrival_s": [3600.0 * 12 + 5],
            **{flag: [True] for flag, _, _ in hourly.FLAGS},
            **{column: [2] for column, _ in hourly.PER_ORDER},
        }
    )
    pooled = hourly.pool_hours(hourly.hour_counts(orders))
    assert math.isnan(pooled.loc[0, "duplicate_charge_rate"])
    assert pooled.loc[12, "duplicate_charge_rate"] == 1.0
    assert pooled.loc[12, "timeouts_per_order"] == 2.0
    with pytest.raises(ValueError, match="bin_s"):
        hourly.hour_counts(orders, bin_s=0)
    with pytest.raises(ValueError, match="seeds"):
        hourly.sweep_hourly("calm-day", "naive", ["x"], SerialExecutor())  # type: ignore[list-item]
