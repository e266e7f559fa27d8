"""payflow.sim._differ: why two strategies give identical numbers, measured by counting
the branches their differing settings add."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pandas as pd

from payflow.sim._differ import differing_settings, explain_identical, path_counts


def test_answer_b_differs_from_lock_only_in_the_paid_order_check_only() -> None:
    assert differing_settings("answer-b", "lock-only") == {"dedupe_paid": (True, False)}
    assert differing_settings("naive", "naive") == {}


def test_the_paid_order_branch_never_runs_and_every_order_is_the_same() -> None:
    with ThreadPoolExecutor(1) as pool:
        counts = path_counts(
            "answer-b", "lock-only", ["slow-provider-day"], [0], orders=300, executor=pool
        )
    assert list(counts["orders"]) == [300]
    assert counts["orders_differing"].sum() == 0
    assert counts["dedupe_paid: answer-b"].sum() == 0
    # The shared order lock did act: second submits waited for the payment in flight.
    assert counts["order_lock: answer-b"].sum() > 0
    text = explain_identical("answer-b", "lock-only", counts)
    assert "differ only in dedupe_paid (on in answer-b, off in lock-only)" in text
    assert "ran 0 times in answer-b" in text and "same in both" in text


def test_a_branch_that_runs_is_counted() -> None:
    with ThreadPoolExecutor(1) as pool:
        counts = path_counts(
            "debounce-only", "naive", ["slow-provider-day"], [0], orders=300, executor=pool
        )
    assert counts["debounce: debounce-only"].sum() > 0
    assert counts["debounce: naive"].sum() == 0
    assert counts["orders_differing"].sum() > 0
    assert "outcomes differ" in explain_identical("debounce-only", "naive", counts)


def test_the_report_states_the_measurement_for_identical_rows() -> None:
    from payflow.report import _identical_notes

    row = {"duplicate_charge_rate": 0.01, "provider_calls_per_order": 2.0}
    summary = pd.DataFrame(
        [
            {"scenario": "slow-provider-day", "strategy": s, **row}
            for s in ("answer-b", "lock-only", "naive")
        ]
    )
    summary.loc[summary["strategy"] == "naive", "provider_calls_per_order"] = 3.0
    notes = _identical_notes(
        summary, ["answer-b", "lock-only", "naive"], ["slow-provider-day"], [0], 200
    )
    assert len(notes) == 1
    assert notes[0].startswith("answer-b and lock-only give identical rows")
    assert "ran 0 times in answer-b" in notes[0]
