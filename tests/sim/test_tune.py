"""payflow.sim.tune and payflow tune: every point once, the Pareto front, any executor."""

from __future__ import annotations

import itertools
import json
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from payflow.cli import main
from payflow.sim import load_scenario, tune
from payflow.sim.sweep import SerialExecutor
from payflow.sim.tune import OBJECTIVES, pareto_mask, space_points, tune_table

from ..contract import SUMMARY_KEYS

#: The slow day at a tenth of its load: small, quick, and a Scenario built in code.
DAY = load_scenario("slow-provider-day").with_load(200)
SPACE = {"timeout_s": [1, 4], "retries": [0, 2], "poll_deadline_s": [60, 300]}
ORDERS = 40


@pytest.fixture(scope="module")
def serial() -> pd.DataFrame:
    return tune(DAY, "recommended", SPACE, seeds=range(2), orders=ORDERS, executor=SerialExecutor())


def _brute_force_pareto(frame: pd.DataFrame) -> list[bool]:
    rows = frame[list(OBJECTIVES)].to_numpy(dtype=float)
    out = []
    for i, a in enumerate(rows):
        dominated = False
        for j, b in enumerate(rows):
            if i != j and all(b <= a) and any(b < a):
                dominated = True
        out.append(not dominated)
    return out


def test_every_grid_point_once(serial: pd.DataFrame) -> None:
    assert len(serial) == 8
    got = sorted(map(tuple, serial[list(SPACE)].to_numpy().tolist()))
    assert got == sorted(itertools.product(*SPACE.values()))
    assert (serial["seeds"] == 2).all() and (serial["orders"] == 2 * ORDERS).all()
    assert set(serial["strategy"]) == {"recommended"}
    for column in ("shipped_rate_low", "outcome_p95_s_high", "cost_per_order_low"):
        assert column in serial


def test_pareto_is_exactly_the_non_dominated_points(serial: pd.DataFrame) -> None:
    assert list(serial["pareto"]) == _brute_force_pareto(serial)
    assert serial["pareto"].any()


def test_pareto_mask_on_made_up_points() -> None:
    frame = pd.DataFrame(
        {
            "cost_per_order": [1, 2, 2, 3, 1],
            "outcome_p95_s": [5, 1, 1, 1, 5],
            "provider_calls_per_order": [1, 1, 2, 1, 1],
        }
    )
    # row 4 equals row 0 (neither beats the other); 2 and 3 are beaten by 1
    assert pareto_mask(frame) == [True, True, False, False, True]
    assert pareto_mask(frame) == _brute_force_pareto(frame)


def test_a_process_pool_and_dask_give_the_same_table(serial: pd.DataFrame) -> None:
    with ProcessPoolExecutor(max_workers=2) as pool:
        pooled = tune(DAY, "recommended", SPACE, seeds=range(2), orders=ORDERS, executor=pool)
    pd.testing.assert_frame_equal(serial, pooled)
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = tune(
            DAY, "recommended", SPACE, seeds=range(2), orders=ORDERS, executor=client.get_executor()
        )
    pd.testing.assert_frame_equal(serial, on_dask)


def test_samples_of_a_large_space_are_seeded_and_distinct() -> None:
    space = {
        "timeout_s": [0.5, 1, 2, 4, 8, 16],
        "retries": [0, 1, 2, 3],
        "backoff": ["full", "equal"],
    }
    for method in ("lhs", "random"):
        a = space_points(space, sample=10, method=method, seed=3)
        assert a == space_points(space, sample=10, method=method, seed=3)
        assert len({tuple(p.values()) for p in a}) == 10
    lhs = space_points(space, sample=6, method="lhs", seed=1)
    assert sorted(p["timeout_s"] for p in lhs) == space["timeout_s"]  # one per stratum
    assert len(space_points(space)) == 48


def test_a_bad_knob_is_named_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="timeuot_s: unknown knob"):
        tune("calm-day", "recommended", {"timeuot_s": [1]}, seeds=1, orders=10)


def test_cli_json_and_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "tune",
            "--scenario",
            "calm-day",
            "--strategy",
            "recommended",
            "--param",
            "timeout_s=1,2",
            "--param",
            "retries=0,1",
            "--seeds",
            "1",
            "--orders",
            "30",
            "--json",
            "--out",
            str(tmp_path),
            "--workers",
            "1",
        ]
    )
    assert code == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4
    for row in rows:
        # The knobs under their own names, ``pareto``, and every summary key of
        # ``payflow simulate`` (the contract) pooled over the seeds.
        assert {"timeout_s", "retries", "pareto", *SUMMARY_KEYS} <= set(row)
        assert isinstance(row["pareto"], bool)
    assert (tmp_path / "tune.csv").exists() and (tmp_path / "pareto.png").exists()


def test_cli_bad_param_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "tune",
                "--scenario",
                "calm-day",
                "--strategy",
                "naive",
                "--param",
                "recheck_interval_s=60",
                "--orders",
                "10",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert "recheck_interval_s: naive cannot use it" in err and err.count("\n") == 1


def test_tune_table_for_the_report(serial: pd.DataFrame) -> None:
    view = tune_table(serial, "DKK")
    assert list(view.columns[:3]) == list(SPACE)
    assert view["cost_per_order (DKK)"].is_monotonic_increasing
    assert view["pareto"].sum() == serial["pareto"].sum()
