"""Conclusions for the notebooks, computed from their tables: no strategy names in logic.

Each notebook ends with a cell that calls one of these and prints the lines;
the sentences are built from the data passed in (and the names it carries),
so changing a notebook's parameters changes its conclusion::

    for line in notes.storm_verdict(storms, normal_rate=35.0, spike_end_s=80.0):
        print(line)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from payflow.sim.verdict import interval_text, money_text, percent

__all__ = [
    "agreement_verdict",
    "crash_verdict",
    "jitter_verdict",
    "order_story",
    "slow_spans",
    "storm_verdict",
    "unhappy_verdict",
    "worst_stretch",
]

_MESSAGES = {
    "success": "'order shipped'",
    "failed": "'payment failed'",
    "email": "'we will email you'",
}


def slow_spans(
    scenario: Any, *, share: float = 0.5, step_s: float = 600.0
) -> list[tuple[float, float]]:
    """The stretches of the day, in hours, when the provider is slow: its median create
    latency is at least ``share`` of the day's worst (from the fault profile, no run).
    A calm profile (no latency above 1 s all day) has none."""
    from payflow.sim._day_profile import day_profile

    day = day_profile(scenario, step_s=step_s)
    latency = day["latency_p50_s"]
    top = float(latency.max())
    if top <= 1.0:
        return []
    slow = (latency >= share * top).tolist()
    hours = (day["t_s"] / 3600.0).tolist()
    spans: list[tuple[float, float]] = []
    start: float | None = None
    for hour, is_slow in zip(hours, slow, strict=True):
        if is_slow and start is None:
            start = hour
        elif not is_slow and start is not None:
            spans.append((start, hour))
            start = None
    if start is not None:
        spans.append((start, hours[-1]))
    return spans


def _hhmm(hours: float) -> str:
    minutes = round(hours * 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def spans_text(spans: Sequence[tuple[float, float]]) -> str:
    """``"11:00–17:00"`` (several joined with "and"), or ``"no slow stretch"``."""
    if not spans:
        return "no slow stretch"
    return " and ".join(f"{_hhmm(a)}–{_hhmm(b)}" for a, b in spans)


def _told(row: Mapping[str, Any]) -> str:
    if row["feedback"] not in _MESSAGES:
        return "was never told anything"
    return f"was told {_MESSAGES[str(row['feedback'])]} after {float(row['feedback_s']):.1f} s"


def order_story(row: Mapping[str, Any]) -> str:
    """What one order was like for its customer, in one clause."""
    return (
        f"clicked {int(row['clicks'])}×, {_told(row)}, was charged {int(row['charged'])}× "
        f"({int(row['refunds'])} refund(s)), order "
        + ("shipped" if row["fulfilled"] else "not shipped")
    )


def unhappy_verdict(side_by_side: Mapping[str, pd.DataFrame], counts: pd.DataFrame) -> list[str]:
    """Notebook 01: each picked order under each strategy (``side_by_side``: strategy ->
    the orders' rows, same index), then the day's unhappy customers and sales per
    strategy (``counts``: :func:`payflow.sim.stories.unhappy_counts` with ``shipped``)."""
    names = list(side_by_side)
    lines = []
    for order_id in side_by_side[names[0]].index:
        parts = [
            f"under {n} the customer {order_story(side_by_side[n].loc[order_id])}" for n in names
        ]
        lines.append(f"{order_id}: " + "; ".join(parts) + ".")
    kinds = ["customer 1", "customer 2", "customer 3"]
    for name in names:
        row: dict[str, Any] = {str(k): v for k, v in counts.loc[name].items()}
        unhappy = sum(int(row[k]) for k in kinds)
        lines.append(
            f"Over the day's {int(row['orders'])} tracked orders, {name} made "
            f"{unhappy} unhappy customers ({int(row['customer 1'])} charged in "
            f"silence, {int(row['customer 2'])} charged twice after one click, "
            f"{int(row['customer 3'])} after clicking again) and shipped {int(row['shipped'])}."
        )
    return lines


def worst_stretch(by_hour: pd.DataFrame, strategy: str, rate: str, bin_hours: float) -> str:
    """The bin of the day where ``strategy`` has its highest ``rate``, with its interval."""
    rows = by_hour[(by_hour["strategy"] == strategy) & (by_hour["orders"] > 0)]
    if rows.empty or float(rows[rate].max()) == 0:
        return f"{strategy} has no {rate.removesuffix('_rate').replace('_', ' ')} at any hour."
    worst = rows.iloc[int(rows[rate].to_numpy().argmax())]
    start = float(worst["hour"])
    return (
        f"{strategy}'s worst stretch is {_hhmm(start)}–{_hhmm(start + bin_hours)}: "
        f"{interval_text(worst, rate)} of its {int(worst['orders'])} orders "
        f"({rate.removesuffix('_rate').replace('_', ' ')})."
    )


def jitter_verdict(largest: pd.DataFrame) -> list[str]:
    """Notebook 03, part 1: ``largest`` is the jitter study at its largest client count,
    indexed by algorithm, with ``calls`` and ``completion_ms``."""
    calls = {str(k): float(v) for k, v in largest["calls"].items()}
    done = {str(k): float(v) for k, v in largest["completion_ms"].items()}
    fewest, most = min(calls, key=calls.__getitem__), max(calls, key=calls.__getitem__)
    fastest = min(done, key=done.__getitem__)
    return [
        f"'{fewest}' sent the fewest writes ({calls[fewest]:.0f}) and '{fastest}' "
        f"finished first ({done[fastest]:.0f} ms); '{most}' sent "
        f"{calls[most] / calls[fewest]:.1f}× as many as '{fewest}'."
    ]


def storm_verdict(
    storms: Mapping[str, pd.DataFrame],
    *,
    normal_rate: float,
    spike_end_s: float,
    after_s: float = 100.0,
    recovered_share: float = 0.85,
) -> list[str]:
    """Notebook 03, part 2: per retry strategy, the goodput from ``after_s`` after the
    spike's end on, and whether it is back to ``recovered_share`` of the normal load."""
    lines = []
    for name, df in storms.items():
        goodput = float(df.loc[df["t"] >= spike_end_s + after_s, "goodput"].mean())
        state = "recovered" if goodput >= recovered_share * normal_rate else "stayed down"
        lines.append(
            f"'{name}': {goodput:.1f} successful requests/s from {after_s:.0f} s after the "
            f"spike ended (normal load {normal_rate:g}/s) -> the provider {state}."
        )
    return lines


def crash_verdict(killed: pd.DataFrame, days: pd.DataFrame, ends: Sequence[str]) -> list[str]:
    """Notebook 04: how the interrupted payments ended per ``variant``, the orphan money,
    and the lost sales of the whole day -- including those in every variant, which the
    crashes did not cause."""
    lines = []
    for variant, rows in killed.groupby("variant", sort=False):
        counts = rows["end"].value_counts()
        parts = ", ".join(f"{counts[e]} {e}" for e in ends if e in counts)
        orphans = rows[rows["orphan_charge"]]
        lines.append(
            f"{variant}: {len(rows)} payments interrupted -> {parts}; "
            f"{len(orphans)} orphan charge(s) ({money_text(float(orphans['amount'].sum()))})"
            + (
                f", median {rows['settled_after_s'].median() / 60:.1f} min to settle."
                if rows["settled_after_s"].notna().any()
                else "."
            )
        )
    lost = days.groupby("variant", sort=False)[["orders", "lost_sales"]].sum()
    killed_lost = killed[killed["end"].str.contains("lost|not shipped|cancel", regex=True)]
    floor = int(lost["lost_sales"].min())
    share = floor / max(1, int(lost["orders"].min()))
    lines.append(
        f"Every variant loses at least {floor} sales ({percent(share)} of orders): customers who "
        "gave up with nothing charged. Reading the journal cannot win them back: they come "
        "from the scenario's customers and payer. Over that floor the crashes cost "
        + ", ".join(f"{int(n) - floor} for {v}" for v, n in lost["lost_sales"].items())
        + f" ({len(killed_lost)} interrupted payment(s) ended unsold)."
    )
    return lines


def agreement_verdict(table: pd.DataFrame) -> list[str]:
    """Notebook 05: per metric, does the real run agree with the simulation? Each line
    gives the cases inside and outside, and the interval the judgement used (the
    ``interval`` column of :func:`payflow.compare.compare`)."""
    lines = []
    for metric, rows in table.groupby("metric", sort=False):
        inside = int(rows["within"].sum())
        if inside == len(rows):
            word = "agrees"
        elif inside == 0:
            word = "disagrees"
        else:
            word = "mostly agrees" if inside * 2 > len(rows) else "mostly disagrees"
        misses = "; ".join(
            f"{r.case} {r.strategy}: real {r.real:.3g} outside [{r.low:.3g}, {r.high:.3g}]"
            for r in rows[~rows["within"]].itertuples()
        )
        lines.append(
            f"{metric}: {word} ({inside} of {len(rows)} real values inside)"
            + (f"; {misses}" if misses else "")
            + "."
        )
    intervals: list[str] = (
        [str(i) for i in table["interval"].dropna().unique()] if "interval" in table else []
    )
    if len(intervals):
        lines.append("Interval used: " + "; ".join(str(i) for i in intervals) + ".")
    return lines
