"""The notebooks' conclusion helpers: sentences from the data passed in."""

from __future__ import annotations

import pandas as pd

from payflow.sim import notes


def test_slow_spans_follow_the_fault_profile() -> None:
    spans = notes.slow_spans("slow-provider-day")
    assert len(spans) == 1
    start, end = spans[0]
    assert 10 <= start < 12 and 15 < end <= 18
    assert notes.slow_spans("calm-day") == []
    assert notes.spans_text([]) == "no slow stretch"
    assert notes.spans_text([(11.0, 16.5)]) == "11:00–16:30"


def test_worst_stretch_names_the_bin_and_interval() -> None:
    by_hour = pd.DataFrame(
        {
            "strategy": ["a", "a", "b"],
            "hour": [10.0, 12.0, 10.0],
            "orders": [100, 50, 100],
            "duplicate_charge_rate": [0.01, 0.2, 0.0],
            "duplicate_charge_rate_low": [0.0, 0.1, 0.0],
            "duplicate_charge_rate_high": [0.05, 0.3, 0.04],
        }
    )
    text = notes.worst_stretch(by_hour, "a", "duplicate_charge_rate", 2)
    assert "12:00–14:00" in text and "20.0 %" in text and "50 orders" in text
    assert "no duplicate charge" in notes.worst_stretch(by_hour, "b", "duplicate_charge_rate", 2)


def test_storm_verdict_is_computed_from_the_normal_rate() -> None:
    df = pd.DataFrame({"t": [0.0, 100.0, 200.0], "goodput": [35.0, 0.0, 30.0]})
    assert "recovered" in notes.storm_verdict({"x": df}, normal_rate=35.0, spike_end_s=50.0)[0]
    assert "stayed down" in notes.storm_verdict({"x": df}, normal_rate=50.0, spike_end_s=50.0)[0]


def test_jitter_verdict_names_the_best_from_the_table() -> None:
    largest = pd.DataFrame(
        {"calls": [300.0, 100.0], "completion_ms": [50.0, 80.0]}, index=["plain", "full"]
    )
    (line,) = notes.jitter_verdict(largest)
    assert line.startswith("'full' sent the fewest writes (100)")
    assert "'plain' finished first" in line and "3.0×" in line


def test_agreement_verdict_per_metric_with_its_interval() -> None:
    table = pd.DataFrame(
        {
            "case": ["c", "c", "c"],
            "strategy": ["s", "t", "s"],
            "metric": ["m1", "m1", "m2"],
            "real": [0.1, 0.5, 2.0],
            "low": [0.0, 0.0, 1.0],
            "high": [0.2, 0.2, 3.0],
            "within": [True, False, True],
            "interval": ["seed spread", "seed spread", "seed spread"],
        }
    )
    lines = notes.agreement_verdict(table)
    assert lines[0].startswith("m1: ") and "1 of 2" in lines[0] and "[0, 0.2]" in lines[0]
    assert lines[1].startswith("m2: agrees (1 of 1")
    assert lines[-1] == "Interval used: seed spread."


def test_crash_verdict_separates_lost_sales_in_every_variant() -> None:
    killed = pd.DataFrame(
        {
            "variant": ["with", "without"],
            "end": ["charged once, shipped", "money taken, not shipped"],
            "orphan_charge": [False, True],
            "amount": [1000, 2500],
            "settled_after_s": [60.0, float("nan")],
        }
    )
    days = pd.DataFrame(
        {"variant": ["with", "without"], "orders": [100, 100], "lost_sales": [8, 9]}
    )
    lines = notes.crash_verdict(killed, days, ["money taken, not shipped", "charged once, shipped"])
    assert "1.0 min" in lines[0] and "25.00 DKK" in lines[1]
    assert "at least 8 sales (8.0 %" in lines[-1] and "1 for without" in lines[-1]


def test_unhappy_verdict_covers_each_order_and_strategy() -> None:
    rows = pd.DataFrame(
        {
            "clicks": [2],
            "feedback": ["success"],
            "feedback_s": [46.6],
            "charged": [2],
            "refunds": [0],
            "fulfilled": [True],
        },
        index=["order-1"],
    )
    counts = pd.DataFrame(
        {"orders": [10], "customer 1": [1], "customer 2": [2], "customer 3": [3], "shipped": [9]},
        index=["before"],
    )
    lines = notes.unhappy_verdict({"before": rows}, counts)
    assert "charged 2×" in lines[0] and "'order shipped' after 46.6 s" in lines[0]
    assert "made 6 unhappy customers" in lines[1] and "shipped 9" in lines[1]


def test_declutter_hides_overprinting_labels() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from payflow import plots

    fig, ax = plt.subplots()
    ax.set_xlim(0, 10)
    for _ in range(3):
        ax.annotate("same place", (5, 0.5))
    ax.annotate("elsewhere", (1, 0.1))
    assert plots.declutter(ax) == 2
    assert [t.get_visible() for t in ax.texts] == [True, False, False, True]
    plt.close(fig)


def test_the_verdict_names_lost_sales_when_they_drive_the_cost() -> None:
    from payflow.sim.verdict import verdict

    base = {"scenario": "d", "orders": 1000, "harmed": 0, "harmed_rate": 0.0,
            "harmed_rate_low": 0.0, "harmed_rate_high": 0.004, "shipped_rate": 0.9}  # fmt: skip
    summary = pd.DataFrame(
        [
            base | {"strategy": "a", "cost_per_order": 100, "lost_sales": 0, "lost_sale_rate": 0.0},
            base
            | {
                "strategy": "b",
                "cost_per_order": 300,
                "lost_sales": 12,
                "lost_sale_rate": 0.012,
            },
        ]
    )
    first, second = verdict(summary, "d")
    assert first.startswith("On d, a costs least") and "loses" not in first
    assert "b costs most" in second and "loses 12 sales (1.2 %" in second
    assert "2.00 DKK per order more" in second
