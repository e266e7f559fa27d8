"""payflow.compare: the real client against the real server, next to the simulation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from payflow import compare
from payflow.core._policy import Timeouts
from payflow.sim import get_strategy


def test_scale_policy_divides_every_duration() -> None:
    policy = get_strategy("recommended").policy
    fast = compare.scale_policy(policy, 100)
    assert fast.retry.timeouts == Timeouts(0.02, 0.005, 0.005)
    assert fast.retry.deadline == pytest.approx(policy.retry.deadline / 100)  # type: ignore[operator]
    assert fast.retry.backoff.cap == pytest.approx(policy.retry.backoff.cap / 100)
    assert fast.polling.deadline == pytest.approx(3.0)
    assert fast.retry.max_attempts == policy.retry.max_attempts
    assert fast.key_scope is policy.key_scope
    with pytest.raises(ValueError, match="time_scale"):
        compare.scale_policy(policy, 0)


def test_backend_strategy_keeps_policy_and_budget_only() -> None:
    st = compare.backend_strategy("recommended")
    assert st.policy == get_strategy("recommended").policy and st.budget == "grpc"
    assert (st.mode, st.order_lock, st.reconcile, st.email) == ("sync", False, False, False)


def test_window_scenario_puts_every_order_in_the_window() -> None:
    sim = compare.sim_run("calm", "naive", orders=30, start="12:00", duration_s=600, seeds=[0, 1])
    assert len(sim) == 60 and set(sim["driver"]) == {"simulation"}
    assert sim["arrival_s"].between(12 * 3600, 12 * 3600 + 600).all()
    assert list(sim.columns[3:]) == list(compare.COLUMNS)
    with pytest.raises(ValueError, match="window"):
        compare.window_scenario("calm", 10, "23:59", 600)


def test_real_run_reads_the_ledger_and_compares() -> None:
    kwargs = {"orders": 16, "start": "10:30", "duration_s": 300.0}
    real = compare.real_run("slow-provider-day", "naive", time_scale=100, **kwargs)  # type: ignore[arg-type]
    assert len(real) == 16 and set(real["driver"]) == {"real"}
    assert (real["provider_calls"] >= 1).all()
    assert (real["payments"] >= real["charged"]).all()
    assert (real["duplicate_charge"] == (real["charged"] > 1)).all()
    assert (real["orphan_charge"] == ((real["charged"] > 0) & ~real["fulfilled"])).all()
    # naive on a slow provider: timeouts, blind retries, and money taken more than once
    assert real["timeouts"].sum() > 0 and real["retries"].sum() > 0
    assert real["payments"].sum() > real["fulfilled"].sum()
    sim = compare.sim_run("slow-provider-day", "naive", seeds=range(4), **kwargs)  # type: ignore[arg-type]
    table = compare.compare(real, sim)
    assert len(table) == len(compare.METRICS)
    assert (table["real_low"] <= table["real"] + 1e-9).all()
    assert (table["real"] <= table["real_high"] + 1e-9).all()
    assert table["within"].dtype == bool
    assert (table["low"] <= table["sim"] + 1e-9).all() and (
        table["sim"] <= table["high"] + 1e-9
    ).all()
    # The ledger was read after the server's queue drained, and the run says so.
    assert real.attrs["drained"] is True and real.attrs["drain_wait_s"] >= 0


def _orders(driver: str, seed: int, flags: list[bool], calls: int = 3) -> pd.DataFrame:
    n = len(flags)
    frame = pd.DataFrame(
        {
            "driver": driver,
            "strategy": "s",
            "seed": seed,
            "order_id": [f"order-{i:06d}" for i in range(n)],
            "arrival_s": 0.0,
            "fulfilled": [not f for f in flags],
            "payments": 1,
            "charged": [2 if f else 1 for f in flags],
            "duplicate_charge": flags,
            "orphan_charge": False,
            "timeouts": 0,
            "retries": 0,
            "provider_calls": calls,
        }
    )
    return frame


def test_agreement_uses_the_simulations_seed_spread_not_one_runs_binomial() -> None:
    # Coupled orders: whole runs go bad together, so per-seed rates spread far more than
    # a binomial of 100 orders would (0.1 to 0.5 here).
    sim = pd.concat(
        [
            _orders("simulation", seed, [i < 100 * p for i in range(100)])
            for seed, p in enumerate([0.1, 0.5, 0.2, 0.4, 0.3, 0.15, 0.45, 0.25])
        ],
        ignore_index=True,
    )
    real = _orders("real", 0, [i < 45 for i in range(100)])  # 45%: an unlucky run
    row = compare.compare(real, sim).set_index("metric").loc["duplicate_charge_rate"]
    assert row["sim_seeds"] == 8 and row["real_runs"] == 1
    # One run's binomial interval around the pooled sim mean (~29%) would reject 45%.
    p = row["sim"]
    assert abs(0.45 - p) > 1.96 * math.sqrt(p * (1 - p) / 100)
    assert bool(row["within"]) and row["low"] < 0.45 < row["high"]
    assert "seed spread" in row["interval"]
    # A real run far outside the seeds' spread fails honestly.
    far = _orders("real", 0, [i < 95 for i in range(100)])
    assert not compare.compare(far, sim).set_index("metric").loc["duplicate_charge_rate", "within"]


def test_agreement_is_never_narrower_than_one_runs_sampling_error() -> None:
    # Every seed made exactly the same count: zero spread, but a run of 50 orders still
    # has its own sampling error.
    sim = pd.concat(
        [_orders("simulation", seed, [i < 10 for i in range(50)]) for seed in range(5)],
        ignore_index=True,
    )
    real = _orders("real", 0, [i < 13 for i in range(50)])
    row = compare.compare(real, sim).set_index("metric").loc["duplicate_charge_rate"]
    assert row["high"] - row["low"] > 0.1 and bool(row["within"])


def test_the_real_run_waits_for_the_queue_to_drain() -> None:
    class Capacity:
        def __init__(self) -> None:
            self.polls = 0

        @property
        def busy(self) -> int:
            self.polls += 1
            return 0 if self.polls > 3 else 2

        queued = 0

    provider = SimpleNamespace(state=SimpleNamespace(capacity=Capacity()))
    assert compare._wait_for_drain(provider, timeout_s=5.0)
    assert provider.state.capacity.polls == 4
    stuck = SimpleNamespace(state=SimpleNamespace(capacity=SimpleNamespace(busy=1, queued=3)))
    assert not compare._wait_for_drain(stuck, timeout_s=0.05)
