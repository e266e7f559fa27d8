"""Sweeps give identical tables serially, on a process pool and on a Dask cluster."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import pandas as pd
import pytest

from payflow.sim.sweep import SerialExecutor, pool_seeds, sweep, wilson_interval
from tests.contract import SUMMARY_KEYS

SCENARIOS = ["calm-day", "slow-provider-day"]
STRATEGIES = ["naive", "recommended"]
SEEDS = [0, 1]
ORDERS = 60


@pytest.fixture(scope="module")
def serial() -> pd.DataFrame:
    return sweep(SCENARIOS, STRATEGIES, SEEDS, executor=SerialExecutor(), orders=ORDERS)


def test_sweep_is_tidy_and_ordered(serial: pd.DataFrame) -> None:
    assert len(serial) == len(SCENARIOS) * len(STRATEGIES) * len(SEEDS)
    assert list(serial[["scenario", "strategy", "seed"]].itertuples(index=False, name=None)) == [
        (sc, st, seed) for sc in SCENARIOS for st in STRATEGIES for seed in SEEDS
    ]
    for key in SUMMARY_KEYS:
        assert key in serial.columns


def test_process_pool_gives_the_same_table(serial: pd.DataFrame) -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = sweep(SCENARIOS, STRATEGIES, SEEDS, executor=pool, orders=ORDERS)
    pd.testing.assert_frame_equal(serial, pooled)


def test_default_executor_gives_the_same_table(serial: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(serial, sweep(SCENARIOS, STRATEGIES, SEEDS, orders=ORDERS))


def test_dask_cluster_gives_the_same_table(serial: pd.DataFrame) -> None:
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = sweep(SCENARIOS, STRATEGIES, SEEDS, executor=client.get_executor(), orders=ORDERS)
    pd.testing.assert_frame_equal(serial, on_dask)


def test_summary_pools_seeds_with_counts_and_intervals(serial: pd.DataFrame) -> None:
    summary = pool_seeds(serial)
    assert len(summary) == len(SCENARIOS) * len(STRATEGIES)
    row = summary.iloc[0]
    assert row["orders"] == serial.iloc[: len(SEEDS)]["orders"].sum()
    assert row["duplicate_charge_rate_low"] <= row["duplicate_charge_rate"]
    assert row["duplicate_charge_rate"] <= row["duplicate_charge_rate_high"]


@pytest.mark.parametrize(("count", "total"), [(0, 5), (0, 50_000), (3, 100), (100, 100)])
def test_wilson_interval(count: int, total: int) -> None:
    low, high = wilson_interval(count, total)
    assert 0 <= low <= count / total <= high <= 1


def test_zero_of_five_is_not_zero_of_fifty_thousand() -> None:
    assert wilson_interval(0, 5)[1] > 100 * wilson_interval(0, 50_000)[1]


def test_bad_seeds_are_named() -> None:
    with pytest.raises(ValueError, match="seeds"):
        sweep(["calm-day"], ["naive"], ["x"])  # type: ignore[list-item]
