"""Matplotlib helpers shared by the notebooks and the report.

Every function takes a tidy DataFrame (as produced by :mod:`payflow.sim`) and an
optional Axes, draws, and returns the Axes. None of them computes anything a
reader would need to check: rates, intervals and percentiles come in the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes

__all__ = [
    "LABELS",
    "fit_vs_observed",
    "heatmap",
    "hhmm_axis",
    "jitter_comparison",
    "lines_by_group",
    "metric_by_strategy",
    "order_timeline",
    "pareto",
    "rate_by_strategy",
    "rate_grid",
    "sim_vs_real",
    "stacked_counts",
    "strategy_bars",
    "text_colour",
    "time_series",
]

#: Human labels (with units) for the metric columns.
LABELS: dict[str, str] = {
    "duplicate_charge_rate": "duplicate charges (% of orders)",
    "silent_charge_rate": "silent charges (% of orders)",
    "orphan_charge_rate": "orphan charges (% of orders)",
    "lost_sale_rate": "lost sales (% of orders)",
    "timeouts_per_order": "client timeouts per order",
    "retries_per_order": "retries per order",
    "provider_calls_per_order": "provider calls per order",
    "feedback_p50_s": "time to feedback, median (s)",
    "feedback_p95_s": "time to feedback, p95 (s)",
    "feedback_p99_s": "time to feedback, p99 (s)",
    "outcome_p95_s": "time to outcome, p95 (s)",
    "cost_per_order": "cost per order (minor units)",
}


def _axes(ax: Axes | None, size: tuple[float, float] = (7.0, 4.0)) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=size, layout="constrained")
    return new


def rate_by_strategy(
    summary: pd.DataFrame, rate: str, ax: Axes | None = None, title: str | None = None
) -> Axes:
    """Horizontal bars of one rate per strategy, with its 95% interval and count.

    ``summary`` has one row per strategy with ``rate``, ``<rate>_low``,
    ``<rate>_high`` and optionally the count column named in ``count``.
    """
    ax = _axes(ax)
    rows = summary.reset_index(drop=True)
    pct = rows[rate] * 100
    err = [pct - rows[f"{rate}_low"] * 100, rows[f"{rate}_high"] * 100 - pct]
    ax.barh(rows["strategy"], pct, xerr=err, color="#c0504d", alpha=0.85, capsize=3)
    counts = rows.get("count")
    ends = (rows[f"{rate}_high"] * 100).where(rows[f"{rate}_high"].notna(), pct)
    top = float(max(ends.max(), pct.max())) or 1.0
    for i, value in enumerate(pct):
        label = f"{value:.2f}%"
        if counts is not None:
            label += f"  ({int(counts.iloc[i])} of {int(rows['orders'].iloc[i])})"
        # past the whisker, never through it; the axis leaves room for the longest label
        ax.annotate(
            label,
            (float(max(value, ends.iloc[i])), i),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.invert_yaxis()
    ax.set_xlabel(LABELS.get(rate, rate))
    ax.set_ylabel("strategy")
    ax.set_title(title or LABELS.get(rate, rate))
    ax.set_xlim(0, top * 1.6)
    return ax


def metric_by_strategy(
    summary: pd.DataFrame,
    metrics: Sequence[str],
    ax: Axes | None = None,
    title: str | None = None,
    ylabel: str | None = None,
) -> Axes:
    """Grouped bars of several per-order metrics (or percentiles) per strategy."""
    ax = _axes(ax)
    rows = summary.reset_index(drop=True)
    width = 0.8 / max(1, len(metrics))
    for j, metric in enumerate(metrics):
        xs = [i + (j - (len(metrics) - 1) / 2) * width for i in range(len(rows))]
        low, high = rows.get(f"{metric}_low"), rows.get(f"{metric}_high")
        yerr = None
        if low is not None and high is not None:
            yerr = [(rows[metric] - low).clip(lower=0), (high - rows[metric]).clip(lower=0)]
        ax.bar(xs, rows[metric], width, yerr=yerr, capsize=2, label=LABELS.get(metric, metric))
    ax.set_xticks(range(len(rows)), rows["strategy"], rotation=30, ha="right")
    ax.set_xlabel("strategy")
    ax.set_ylabel(ylabel or (LABELS.get(metrics[0], metrics[0]) if len(metrics) == 1 else ""))
    ax.set_title(title or ", ".join(LABELS.get(m, m) for m in metrics))
    if len(metrics) > 1:
        ax.legend(fontsize=8)
    return ax


def rate_grid(summary: pd.DataFrame, rate: str, ax: Axes | None = None) -> Axes:
    """A scenario x strategy grid of one rate (percent), each cell annotated."""
    ax = _axes(ax, (8.0, 4.5))
    grid = summary.pivot(index="strategy", columns="scenario", values=rate) * 100
    # Keep the order the data gives (presets, scenarios), not alphabetical.
    grid = grid.reindex(
        index=list(dict.fromkeys(summary["strategy"])),
        columns=list(dict.fromkeys(summary["scenario"])),
    )
    image = ax.imshow(grid.to_numpy(), cmap="Reds", aspect="auto", vmin=0)
    ax.set_xticks(range(grid.shape[1]), list(grid.columns), rotation=30, ha="right")
    ax.set_yticks(range(grid.shape[0]), list(grid.index))
    values = grid.to_numpy()
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7)
    ax.figure.colorbar(image, ax=ax, label=f"{LABELS.get(rate, rate)}")
    ax.set_xlabel("scenario")
    ax.set_ylabel("strategy")
    ax.set_title(f"{LABELS.get(rate, rate)} by scenario and strategy")
    return ax


def jitter_comparison(results: pd.DataFrame, what: str, ax: Axes | None = None) -> Axes:
    """The AWS jitter study: ``what`` ("calls" or "completion_ms") vs clients per algorithm.

    ``results`` has columns ``clients``, ``algorithm``, ``what`` and optionally
    ``<what>_low`` / ``<what>_high``.
    """
    ax = _axes(ax)
    for algorithm, group in results.groupby("algorithm", sort=False):
        group = group.sort_values("clients")
        ax.plot(group["clients"], group[what], marker="o", label=str(algorithm))
        if f"{what}_low" in group:
            ax.fill_between(
                group["clients"], group[f"{what}_low"], group[f"{what}_high"], alpha=0.2
            )
    ax.set_xlabel("contending clients")
    ax.set_ylabel("writes sent (work)" if what == "calls" else "time to finish (ms)")
    ax.set_title("Work" if what == "calls" else "Completion time")
    ax.legend(title="backoff", fontsize=8)
    return ax


def time_series(
    frame: pd.DataFrame,
    x: str,
    ys: Sequence[str],
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    spans: Sequence[tuple[float, float, str]] = (),
) -> Axes:
    """Lines of ``ys`` against ``x``; ``spans`` shades (start, end, label) intervals."""
    ax = _axes(ax)
    for y in ys:
        ax.plot(frame[x], frame[y], label=LABELS.get(y, y))
    for start, end, label in spans:
        ax.axvspan(start, end, color="grey", alpha=0.15, label=label)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or (LABELS.get(ys[0], ys[0]) if len(ys) == 1 else ""))
    ax.set_title(title)
    if len(ys) > 1 or spans:
        ax.legend(fontsize=8)
    return ax


_MARKERS: dict[str, dict[str, Any]] = {
    "click": {"marker": "v", "color": "#1f77b4"},
    "call": {"marker": "|", "color": "#7f7f7f"},
    "timeout": {"marker": "x", "color": "#d62728"},
    "charge": {"marker": "D", "color": "#2ca02c"},
    "refund": {"marker": "<", "color": "#9467bd"},
    "ui": {"marker": "s", "color": "#ff7f0e"},
}


def order_timeline(trace: pd.DataFrame, ax: Axes | None = None, title: str = "") -> Axes:
    """One order's story: each event kind on its own row, time on the x axis.

    ``trace`` has columns ``t`` (seconds since the first click), ``kind`` and
    ``label``; kinds with a known style are ``click``, ``call``, ``timeout``,
    ``charge``, ``refund`` and ``ui`` (what the customer was shown).
    """
    ax = _axes(ax, (9.0, 3.2))
    kinds = list(dict.fromkeys(trace["kind"]))
    for row, kind in enumerate(kinds):
        events = trace[trace["kind"] == kind]
        style = _MARKERS.get(str(kind), {"marker": "o", "color": "black"})
        ax.scatter(events["t"], [row] * len(events), s=60, **style)
        # One label per run of equal labels ("timeout ×3"), alternately above and below
        # the row, so that neighbouring events do not print over each other.
        runs: list[tuple[float, str, int]] = []
        for t, label in zip(events["t"], events["label"].astype(str), strict=True):
            if runs and runs[-1][1] == label:
                runs[-1] = (runs[-1][0], label, runs[-1][2] + 1)
            else:
                runs.append((float(t), label, 1))
        for i, (t, label, n) in enumerate(runs):
            ax.annotate(
                label if n == 1 else f"{label} ×{n}",
                (t, row),
                xytext=(2, 7 if i % 2 == 0 else -13),
                textcoords="offset points",
                fontsize=7,
                rotation=20,
            )
    ax.set_yticks(range(len(kinds)), kinds)
    ax.set_ylim(-0.6, len(kinds) - 0.2)
    ax.set_xlabel("seconds since the first click")
    ax.set_title(title or "one order, event by event")
    ax.grid(axis="x", alpha=0.3)
    return ax


def declutter(ax: Axes) -> int:
    """Hide every text label of ``ax`` that would print over one drawn before it or over
    the title (call after the axes' scales and limits are final); returns how many."""
    canvas = ax.figure.canvas
    canvas.draw()
    renderer = canvas.get_renderer()  # type: ignore[attr-defined]
    kept: list[Any] = []
    hidden = 0
    top = ax.get_window_extent(renderer).y1
    for text in ax.texts:
        box = text.get_window_extent(renderer)
        if box.y1 > top or any(box.overlaps(k) for k in kept):  # over the title, or a label
            text.set_visible(False)
            hidden += 1
        else:
            kept.append(box)
    return hidden


def lines_by_group(
    frame: pd.DataFrame,
    x: str,
    y: str,
    group: str = "strategy",
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    spans: Sequence[tuple[float, float, str]] = (),
    percent: bool = False,
    bands: bool = True,
) -> Axes:
    """One line of ``y`` against ``x`` per value of ``group``, in order of appearance.

    Where ``frame`` has ``<y>_low`` / ``<y>_high`` (and ``bands``) each line
    gets a shaded band.
    ``percent`` multiplies values by 100 (for rates); ``spans`` shades
    (start, end, label) intervals of ``x``.
    """
    ax = _axes(ax)
    factor = 100.0 if percent else 1.0
    for name, rows in frame.groupby(group, sort=False):
        rows = rows.sort_values(x)
        (line,) = ax.plot(rows[x], rows[y] * factor, marker=".", label=str(name))
        if bands and f"{y}_low" in rows and f"{y}_high" in rows:
            ax.fill_between(
                rows[x],
                rows[f"{y}_low"] * factor,
                rows[f"{y}_high"] * factor,
                color=line.get_color(),
                alpha=0.15,
            )
    for start, end, label in spans:
        ax.axvspan(start, end, color="grey", alpha=0.12, label=label)
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or LABELS.get(y, y))
    ax.set_title(title or LABELS.get(y, y))
    ax.legend(fontsize=8, title=group)
    return ax


def sim_vs_real(
    table: pd.DataFrame,
    metrics: Sequence[str],
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
) -> Axes:
    """Where the real value must fall (bar), the simulation (diamond) and the real value.

    ``table`` is :func:`payflow.compare.compare` output (``strategy``,
    ``metric``, ``real``, ``sim``, ``low``, ``high``, ``within``); one row
    per (strategy, metric in ``metrics``). The bar is the agreement interval
    built from the simulation's seed-to-seed spread (coupling included); the
    real value's mark is green inside it and red outside. Tables without
    ``low``/``high`` (older output) draw the real run's own interval
    (``real_low``/``real_high``) instead. Rates (``*_rate``) are drawn in percent.
    """
    ax = _axes(ax, (8.0, 0.45 * max(4, len(table)) + 1.0))
    rows = table[table["metric"].isin(metrics)].reset_index(drop=True)
    agreement = "low" in rows.columns and "high" in rows.columns
    low_col, high_col = ("low", "high") if agreement else ("real_low", "real_high")
    for y, row in enumerate(rows.to_dict("records")):
        k = 100.0 if str(row["metric"]).endswith("_rate") else 1.0
        ax.plot([row[low_col] * k, row[high_col] * k], [y, y], color="#1f77b4", lw=6,
                alpha=0.35, solid_capstyle="butt")  # fmt: skip
        colour = "#2ca02c" if row["within"] else "#d62728"
        if agreement:
            ax.plot([row["sim"] * k], [y], "D", color="#444444", ms=6)
            ax.plot([row["real"] * k], [y], "|", color=colour, ms=16, mew=3)
        else:
            ax.plot([row["real"] * k], [y], "|", color="#1f77b4", ms=14, mew=2)
            ax.plot([row["sim"] * k], [y], "D", color=colour, ms=7)
    labels = [
        f"{r.strategy}: {LABELS.get(str(r.metric), str(r.metric))}" for r in rows.itertuples()
    ]
    ax.set_yticks(range(len(rows)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel or "value (rates in % of orders)")
    if agreement:
        ax.set_title(title or "real value vs where the simulation says it should fall")
        ax.plot([], [], color="#1f77b4", lw=6, alpha=0.35,
                label="95% interval from the simulation's seed spread")  # fmt: skip
        ax.plot([], [], "D", color="#444444", label="simulation (pooled)")
        ax.plot([], [], "|", color="#2ca02c", mew=3, label="real run, inside")
        ax.plot([], [], "|", color="#d62728", mew=3, label="real run, outside")
    else:
        ax.set_title(title or "real run (95% interval) vs simulation (diamond)")
        ax.plot([], [], color="#1f77b4", lw=6, alpha=0.35, label="real run, 95% interval")
        ax.plot([], [], "D", color="#2ca02c", label="simulation, inside")
        ax.plot([], [], "D", color="#d62728", label="simulation, outside")
    ax.legend(fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return ax


def stacked_counts(
    table: pd.DataFrame,
    ax: Axes | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "count",
    colors: Sequence[str] | None = None,
) -> Axes:
    """Stacked bars: one bar per row of ``table``, one segment per column (counts).

    ``table`` is a crosstab (e.g. :func:`payflow.sim.crashes.end_table`);
    each bar is labelled with its total.
    """
    ax = _axes(ax)
    bottom = pd.Series(0.0, index=table.index)
    for i, column in enumerate(table.columns):
        values = table[column].astype(float)
        color = colors[i % len(colors)] if colors else None
        ax.bar([str(x) for x in table.index], values, bottom=bottom, label=str(column), color=color)
        bottom = bottom + values
    for x, total in enumerate(bottom):
        ax.annotate(
            f"{total:.0f}", (x, total), xytext=(0, 3), textcoords="offset points", ha="center",
            fontsize=8,
        )  # fmt: skip
    ax.set_title(title)
    ax.set_xlabel(xlabel or (str(table.index.name) if table.index.name else ""))
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
    ax.tick_params(axis="x", labelrotation=20)
    return ax


def text_colour(rgba: Sequence[float]) -> str:
    """Black or white text, whichever reads on a cell of colour ``rgba`` (luminance)."""
    r, g, b = (float(c) for c in rgba[:3])
    return "white" if 0.2126 * r + 0.7152 * g + 0.0722 * b < 0.5 else "black"


def heatmap(
    grid: pd.DataFrame,
    ax: Axes | None = None,
    *,
    vmax: float | None = None,
    cmap: str = "Reds",
    fmt: str = "{:.1f}",
    label: str = "",
    title: str = "",
) -> Axes:
    """A grid (rows x columns) of values, each cell labelled in a colour that reads on it.

    Pass one ``vmax`` to every heatmap of a metric family so they share a scale."""
    import matplotlib as mpl
    import numpy as np

    ax = _axes(ax, (8.0, 4.5))
    values = grid.to_numpy(dtype=float)
    top = vmax if vmax is not None else float(np.nanmax(values)) if values.size else 1.0
    norm = mpl.colors.Normalize(vmin=0, vmax=top or 1.0)
    colormap = mpl.colormaps[cmap]
    image = ax.imshow(values, cmap=colormap, norm=norm, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns], rotation=25, ha="right")
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            v = values[i, j]
            if v != v:
                continue
            ax.text(
                j,
                i,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=9,
                color=text_colour(colormap(norm(v))),
            )
    ax.figure.colorbar(image, ax=ax, label=label)
    ax.set_title(title)
    return ax


def strategy_bars(
    rows: pd.DataFrame,
    column: str,
    ax: Axes | None = None,
    *,
    order: Sequence[str],
    xmax: float | None = None,
    scale: float = 1.0,
    fmt: str = "{:.1f}",
    xlabel: str = "",
    title: str = "",
    colour: str = "#c0392b",
) -> Axes:
    """Horizontal bars, one per strategy in ``order`` (top first), each labelled past the
    end of its bar and interval (``<column>_low`` / ``_high`` when present)."""
    import numpy as np

    ax = _axes(ax, (5.0, 0.4 * len(order) + 1.0))
    data = rows.set_index("strategy").reindex(list(order))
    values = data[column].to_numpy(dtype=float) * scale
    y = np.arange(len(order))
    low_col, high_col = f"{column}_low", f"{column}_high"
    ends = values.copy()
    if low_col in data and high_col in data:
        low = data[low_col].to_numpy(dtype=float) * scale
        high = data[high_col].to_numpy(dtype=float) * scale
        ok = np.isfinite(low) & np.isfinite(high)
        err = np.vstack([np.where(ok, values - low, 0), np.where(ok, high - values, 0)])
        ax.barh(
            y,
            values,
            color=colour,
            xerr=np.clip(err, 0, None),
            capsize=2,
            error_kw={"elinewidth": 0.8, "ecolor": "#444"},
        )
        ends = np.where(ok, np.maximum(high, values), values)
    else:
        ax.barh(y, values, color=colour)
    top = xmax if xmax is not None else float(np.nanmax(ends)) if len(ends) else 1.0
    top = top if top and np.isfinite(top) else 1.0
    ax.set_xlim(0, top * 1.35)
    for yi, v, e in zip(y, values, ends, strict=True):
        if np.isfinite(v):
            ax.text(float(e + top * 0.02), float(yi), fmt.format(v), va="center", fontsize=9)
    ax.set_yticks(y, list(order))
    ax.invert_yaxis()  # the first (cheapest) strategy on top, as in the tables
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return ax


def hhmm_axis(ax: Axes, axis: str = "x") -> Axes:
    """Label an axis in seconds since midnight as ``HH:MM``, every three hours."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_major_locator(MultipleLocator(3 * 3600))
    target.set_major_formatter(
        FuncFormatter(lambda v, _: f"{int(v // 3600):02d}:{int(v % 3600 // 60):02d}")
    )
    return ax


def pareto(
    tuned: pd.DataFrame,
    x: str = "outcome_p95_s",
    y: str = "cost_per_order",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """The points of a tune (:func:`payflow.sim.tune`): ``y`` against ``x`` with
    their 95% intervals, the Pareto points (column ``pareto``) highlighted and
    labelled with their knobs, the others grey. The knobs are the columns before
    ``scenario``."""
    ax = _axes(ax, (7.5, 4.5))
    columns = list(tuned.columns)
    knobs = columns[: columns.index("scenario")] if "scenario" in columns else []
    front = tuned[tuned["pareto"]].sort_values(x)
    rest = tuned[~tuned["pareto"]]
    for frame, colour, size, label in (
        (rest, "0.65", 20, "dominated"),
        (front, "tab:red", 40, "Pareto front"),
    ):
        if frame.empty:
            continue
        xerr = yerr = None
        if f"{x}_low" in frame and f"{x}_high" in frame:
            xerr = [
                (frame[x] - frame[f"{x}_low"]).clip(lower=0),
                (frame[f"{x}_high"] - frame[x]).clip(lower=0),
            ]
        if f"{y}_low" in frame and f"{y}_high" in frame:
            yerr = [
                (frame[y] - frame[f"{y}_low"]).clip(lower=0),
                (frame[f"{y}_high"] - frame[y]).clip(lower=0),
            ]
        ax.errorbar(
            frame[x], frame[y], xerr=xerr, yerr=yerr, fmt="none", ecolor=colour, alpha=0.5, lw=1
        )
        ax.scatter(frame[x], frame[y], s=size, color=colour, label=label, zorder=3)
    ax.plot(front[x], front[y], color="tab:red", lw=1, alpha=0.6)
    for row in front.itertuples(index=False):
        text = ", ".join(f"{k}={getattr(row, k)}" for k in knobs)
        ax.annotate(
            text,
            (getattr(row, x), getattr(row, y)),
            fontsize=7,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.set_title(title or "settings tried: lower left is better")
    ax.legend(frameon=False, fontsize=8)
    return ax


def fit_vs_observed(
    compared: pd.DataFrame,
    endpoints: Sequence[str] = ("create", "read"),
    ax: Axes | None = None,
) -> Axes:
    """Observed per-bin latency percentiles (points) against the fitted profile's
    (lines), per endpoint kind, on a log scale. ``compared`` comes from
    :func:`payflow.sim.fit.fitted_vs_observed`."""
    ax = _axes(ax, (8.0, 4.0))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, kind in enumerate(endpoints):
        rows = compared[compared["endpoint"] == kind].sort_values("mid_h")
        if rows.empty:
            continue
        colour = colours[i % len(colours)]
        for q, marker, style in (("p50", "o", "-"), ("p95", "^", "--")):
            ax.scatter(
                rows["mid_h"],
                rows[f"{q}_s"],
                marker=marker,
                s=14,
                color=colour,
                label=f"{kind} {q} observed",
            )
            ax.step(
                rows["mid_h"],
                rows[f"fitted_{q}_s"],
                where="mid",
                ls=style,
                lw=1,
                color=colour,
                label=f"{kind} {q} fitted",
            )
    ax.set_yscale("log")
    ax.set_xlabel("hour of day")
    ax.set_ylabel("latency (s)")
    ax.set_xlim(0, 24)
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return ax
