"""run(): determinism, the result's shape, traces, crashes."""

from __future__ import annotations

import math
from dataclasses import replace

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from payflow.sim import Scenario, get_strategy, load_scenario, run
from payflow.sim._metrics import ORDER_COLUMNS
from payflow.sim._scenarios import Backend
from tests.contract import SUMMARY_KEYS as CONTRACT_KEYS


@pytest.mark.parametrize("strategy", ["naive", "recommended", "answer-a"])
def test_same_scenario_strategy_and_seed_give_identical_orders(strategy: str) -> None:
    a = run("slow-provider-day", strategy, seed=3, orders=120)
    b = run("slow-provider-day", strategy, seed=3, orders=120)
    assert_frame_equal(a.orders, b.orders)
    assert a.summary == b.summary


def test_different_seeds_give_different_days() -> None:
    a = run("slow-provider-day", "naive", seed=1, orders=120).orders
    b = run("slow-provider-day", "naive", seed=2, orders=120).orders
    assert not a["arrival_s"].equals(b["arrival_s"])
    assert not a.equals(b)


def test_customers_are_the_same_people_under_every_strategy() -> None:
    # Arrivals, amounts and patience come from their own stream: common random numbers.
    a = run("calm-day", "naive", seed=5, orders=80).orders
    b = run("calm-day", "recommended", seed=5, orders=80).orders
    cols = ["order_id", "arrival_s", "amount", "patience_s"]
    assert_frame_equal(a[cols], b[cols])


def test_result_has_one_row_per_order_and_every_metric() -> None:
    result = run("brownout", "naive", seed=0, orders=90)
    frame = result.orders
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 90 == result.summary["orders"]
    assert list(frame.columns) == list(ORDER_COLUMNS)
    assert frame["order_id"].is_unique
    for key in CONTRACT_KEYS:
        assert key in result.summary, key
    for rate in ("duplicate_charge", "silent_charge", "orphan_charge", "lost_sale"):
        count = result.summary[f"{rate}s"]
        assert result.summary[f"{rate}_rate"] == pytest.approx(count / 90)
        assert count == int(frame[rate].sum())
    assert result.summary["provider_calls"] == int(frame["provider_calls"].sum())


def test_orders_override_sets_the_sample_not_the_load() -> None:
    small = run("calm-day", "naive", seed=0, orders=37, trace=False)
    assert small.summary["orders"] == 37 == len(small.orders)
    assert load_scenario("calm-day").traffic.orders == 2000
    # The provider served the same day, whatever the sample: the scenario's real load.
    full = run("calm-day", "naive", seed=0, trace=False)
    assert small.provider == full.provider
    assert small.summary["orders_per_day"] == full.summary["orders_per_day"] == 2000
    # The sample is the full day's orders, as they went (not a lighter day).
    sample = full.orders.set_index("order_id").loc[small.orders["order_id"]].reset_index()
    assert (sample["provider_calls"].to_numpy() == small.orders["provider_calls"].to_numpy()).all()


def test_scenario_and_strategy_values_are_accepted() -> None:
    scenario = load_scenario("calm-day").with_orders(40)
    strategy = get_strategy("naive").but(name="naive-debounced", debounce=True)
    result = run(scenario, strategy, seed=0)
    assert result.summary["strategy"] == "naive-debounced"
    assert result.summary["orders"] == 40


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"orders": 0}, "orders"),
        ({"orders": True}, "orders"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run("calm-day", "naive", **kwargs)  # type: ignore[arg-type]


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(LookupError, match="slow-provider-day"):
        run("no-such-day", "naive")
    with pytest.raises(LookupError, match="recommended"):
        run("calm-day", "no-such-strategy")


def test_trace_shows_clicks_calls_timeouts_charges_and_the_page() -> None:
    result = run("slow-provider-day", "naive", seed=1, orders=200)
    frame = result.orders
    chosen = (frame["unhappy_customer"] == 3) & (frame["timeouts"] > 0)
    order_id = frame.loc[chosen, "order_id"].iloc[0]
    trace = result.trace(order_id)
    assert list(trace.columns) == ["order_id", "at_s", "kind", "detail"]
    kinds = set(trace["kind"])
    assert {"customer", "call", "timeout", "provider", "backend"} <= kinds
    assert trace["at_s"].is_monotonic_increasing
    assert (trace["detail"].str.contains("created")).sum() >= 2  # charged twice
    ledger = trace[trace["kind"] == "ledger"]
    assert ledger["detail"].str.contains("ends (?:reserved|captured)").sum() >= 2
    number = int(order_id.split("-")[1])
    assert_frame_equal(result.trace(number), trace)
    with pytest.raises(LookupError):
        result.trace("order-999999")


def test_a_run_without_traces_says_so() -> None:
    result = run("calm-day", "naive", seed=0, orders=20, trace=False)
    with pytest.raises(ValueError, match="trace"):
        result.trace(1)


def test_feedback_times_are_measured_from_the_first_click() -> None:
    frame = run("calm-day", "naive", seed=0, orders=100).orders
    told = frame.dropna(subset=["feedback_s"])
    assert (told["feedback_s"] >= 0).all()
    assert ((told["feedback_at_s"] - told["arrival_s"]) - told["feedback_s"]).abs().max() < 1e-9
    assert all(math.isnan(v) for v in frame.loc[frame["feedback"] == "none", "feedback_s"])


def _crashy() -> Scenario:
    # A busy calm day whose backend dies every ten minutes from 10:00 to 20:00.
    scenario = load_scenario("calm-day").with_orders(3000)
    crashes = tuple(36_000.0 + 600.0 * i for i in range(60))
    return replace(scenario, name="crashy", backend=Backend(crashes=crashes, restart_s=30.0))


def test_crashes_kill_flows_and_recovery_settles_the_journal() -> None:
    scenario = _crashy()
    recovered = run(scenario, "recommended", seed=2)
    killed = sum(
        recovered.trace(o)["detail"].str.contains("killed by a crash").any()
        for o in recovered.orders["order_id"]
    )
    assert killed > 0
    s = recovered.summary
    assert s["unresolved"] == 0 and s["orphan_charges"] == 0 and s["duplicate_charges"] == 0


def test_without_a_reconciler_a_crash_leaves_records_nobody_settles() -> None:
    forgetful = get_strategy("recommended").but(
        name="no-recovery", reconcile=False, recover_on_restart=False
    )
    s = run(_crashy(), forgetful, seed=2, trace=False).summary
    assert s["unresolved"] > 0


def _fingerprint_in_subprocess(hash_seed: str) -> str:
    import os
    import subprocess
    import sys

    code = (
        "import hashlib, pandas as pd; from payflow.sim import run;"
        "r = run('outage-recovery', 'recommended', seed=4, orders=150);"
        "print(hashlib.sha256(pd.util.hash_pandas_object(r.orders).values.tobytes()).hexdigest())"
    )
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_identical_orders_in_other_processes_whatever_the_hash_seed() -> None:
    # What a process pool or a Dask worker would compute for the same arguments.
    assert _fingerprint_in_subprocess("1") == _fingerprint_in_subprocess("2")


def test_a_progress_callback_does_not_change_the_day() -> None:
    seen: list[float] = []
    with_bar = run(
        "brownout", "naive", seed=7, orders=80, progress=lambda now, end: seen.append(now)
    )
    plain = run("brownout", "naive", seed=7, orders=80)
    assert_frame_equal(with_bar.orders, plain.orders)
    assert seen == sorted(seen) and len(seen) > 90
