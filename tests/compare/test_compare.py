"""payflow.compare: the real client against the real server, next to the simulation."""

from __future__ import annotations

import pytest

from payflow import compare
from payflow.core.policy import Timeouts
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
