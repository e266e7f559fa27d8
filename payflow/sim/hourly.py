"""Metrics per hour of the day: when in the day the harm happens.

A run's summary pools the whole day; a slow-provider day is calm in the
morning and bad in the afternoon, so the rates are also wanted by the hour
the order arrived::

    from payflow.sim import hourly
    runs, counts = hourly.sweep_hourly("slow-provider-day", ["naive", "recommended"], range(3))
    by_hour = hourly.pool_hours(counts)     # rates with Wilson intervals, per hour

Counts are taken from ``Result.orders`` (one row per order, ``arrival_s``
seconds since midnight); rates are pooled over seeds exactly as
:func:`payflow.sim.sweep.pool_seeds` pools the whole day.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

import numpy as np
import pandas as pd

from payflow.sim.sweep import map_runs, wilson_interval

__all__ = [
    "FLAGS",
    "PER_ORDER",
    "hour_counts",
    "pool_hours",
    "queue_by_bin",
    "run_with_hours",
    "sweep_hourly",
]

#: Per-order flags counted per hour, as (order column, count column, rate column).
FLAGS: tuple[tuple[str, str, str], ...] = (
    ("duplicate_charge", "duplicate_charges", "duplicate_charge_rate"),
    ("silent_charge", "silent_charges", "silent_charge_rate"),
    ("orphan_charge", "orphan_charges", "orphan_charge_rate"),
    ("lost_sale", "lost_sales", "lost_sale_rate"),
)

#: Per-order counts summed per hour, as (order column, per-order mean column).
PER_ORDER: tuple[tuple[str, str], ...] = (
    ("timeouts", "timeouts_per_order"),
    ("retries", "retries_per_order"),
    ("provider_calls", "provider_calls_per_order"),
)

_DAY_S = 86_400.0


def _bins(orders: pd.DataFrame, bin_s: float) -> tuple[int, np.ndarray[Any, Any]]:
    """How many bins a day has, and each order's bin by arrival (late ones in the last)."""
    bins = max(1, math.ceil(_DAY_S / bin_s))
    index = np.minimum((orders["arrival_s"].to_numpy(dtype=float) // bin_s).astype(int), bins - 1)
    return bins, index


def hour_counts(orders: pd.DataFrame, *, bin_s: float = 3600.0) -> pd.DataFrame:
    """Counts per bin of arrival time: one row per bin of the day, empty bins included.

    Columns: ``hour`` (the bin's start in hours since midnight), ``orders``,
    the count columns of :data:`FLAGS` and the per-order columns of
    :data:`PER_ORDER` (sums). Orders arriving after midnight fall in the last bin.
    """
    if not bin_s > 0 or not math.isfinite(bin_s):
        raise ValueError(f"bin_s: must be a positive number of seconds, got {bin_s!r}")
    bins, index = _bins(orders, bin_s)
    out: dict[str, Any] = {
        "hour": np.arange(bins) * bin_s / 3600.0,
        "orders": np.bincount(index, minlength=bins),
    }
    for flag, count, _ in FLAGS:
        weights = orders[flag].to_numpy(dtype=float)
        out[count] = np.bincount(index, weights=weights, minlength=bins).astype(int)
    for column, _ in PER_ORDER:
        weights = orders[column].to_numpy(dtype=float)
        out[column] = np.bincount(index, weights=weights, minlength=bins).astype(int)
    return pd.DataFrame(out)


def pool_hours(counts: pd.DataFrame, by: Sequence[str] = ("scenario", "strategy")) -> pd.DataFrame:
    """Pool :func:`hour_counts` rows over seeds: rates with 95% Wilson intervals per hour.

    Rows are grouped by the columns of ``by`` present in ``counts`` plus
    ``hour``. Each rate of :data:`FLAGS` gets ``<rate>``, ``<rate>_low`` and
    ``<rate>_high`` (NaN in an hour without orders); each column of
    :data:`PER_ORDER` gets its pooled mean per order.
    """
    keys = [c for c in by if c in counts.columns] + ["hour"]
    sums = [c for c in ("orders", *(f[1] for f in FLAGS), *(p[0] for p in PER_ORDER))]
    pooled = counts.groupby(keys, sort=False, as_index=False)[sums].sum()
    n = pooled["orders"].to_numpy()
    for _, count, rate in FLAGS:
        k = pooled[count].to_numpy()
        bounds = [
            wilson_interval(int(a), int(b)) if b else (math.nan, math.nan)
            for a, b in zip(k, n, strict=True)
        ]
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled[rate] = np.where(n > 0, k / np.maximum(n, 1), np.nan)
        pooled[f"{rate}_low"] = [low for low, _ in bounds]
        pooled[f"{rate}_high"] = [high for _, high in bounds]
    for column, mean in PER_ORDER:
        pooled[mean] = np.where(n > 0, pooled[column] / np.maximum(n, 1), np.nan)
    if "harmed" in counts:  # from run_with_hours: orders with any harm, per bin
        harmed = counts.groupby(keys, sort=False, as_index=False)["harmed"].sum()
        pooled = pooled.merge(harmed, on=keys)
        with np.errstate(invalid="ignore", divide="ignore"):
            pooled["harmed_rate"] = np.where(n > 0, pooled["harmed"] / np.maximum(n, 1), np.nan)
    if "queue_waiting" in counts:  # a level, not a count: its mean over seeds
        queue = counts.groupby(keys, sort=False, as_index=False)["queue_waiting"].mean()
        pooled = pooled.merge(queue, on=keys)
    return pooled


def queue_by_bin(
    queue_by_slot: Sequence[float], slot_s: float, bin_s: float, bins: int
) -> list[float]:
    """The provider's queue (requests waiting for a slot, time-weighted) per bin of the
    day, from :attr:`~payflow.sim.ProviderStats.queue_by_slot`: the mean of the slots
    each bin holds (a bin the run did not reach reads 0)."""
    per_bin: list[float] = []
    for b in range(bins):
        inside = [
            level
            for i, level in enumerate(queue_by_slot)
            if b * bin_s <= i * slot_s < (b + 1) * bin_s
        ]
        per_bin.append(sum(inside) / len(inside) if inside else 0.0)
    return per_bin


def run_with_hours(
    scenario: Any, strategy: Any, seed: int, orders: int | None, bin_s: float = 3600.0
) -> tuple[dict[str, Any], pd.DataFrame]:
    """One run: its summary, and its :func:`hour_counts` with ``harmed`` (orders with
    any harm) and ``queue_waiting`` (the provider's queue, :func:`queue_by_bin`)."""
    from payflow.sim import run
    from payflow.sim._metrics import HARM_FLAGS

    result = run(scenario, strategy, seed=seed, orders=orders, trace=False)
    frame = result.orders
    counts = hour_counts(frame, bin_s=bin_s)
    bins, index = _bins(frame, bin_s)
    harmed = frame[list(HARM_FLAGS)].astype(bool).any(axis=1).to_numpy(dtype=float)
    counts["harmed"] = np.bincount(index, weights=harmed, minlength=bins).astype(int)
    stats = result.provider
    counts["queue_waiting"] = queue_by_bin(stats.queue_by_slot, stats.queue_slot_s, bin_s, bins)
    summary = dict(result.summary)
    counts.insert(0, "seed", seed)
    counts.insert(0, "strategy", summary["strategy"])
    counts.insert(0, "scenario", summary["scenario"])
    return summary, counts


def sweep_hourly(
    scenarios: Iterable[Any] | str,
    strategies: Iterable[Any] | str,
    seeds: Iterable[int] | int,
    executor: Executor | None = None,
    *,
    orders: int | None = None,
    bin_s: float = 3600.0,
    progress: bool | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Like :func:`payflow.sim.sweep.sweep`, keeping per-hour counts as well.

    Returns ``(runs, counts)``: ``runs`` has one row per (scenario, strategy,
    seed) with the summary keys, exactly as ``sweep`` returns them;
    ``counts`` has the :func:`hour_counts` rows of every run with
    ``scenario``, ``strategy`` and ``seed`` columns. ``executor`` is any
    :class:`concurrent.futures.Executor` (default: a process pool). ``progress``
    shows a bar: by default in a terminal, and as a widget in JupyterLab.
    """
    results = map_runs(
        run_with_hours, scenarios, strategies, seeds, executor, (orders, bin_s), progress
    )
    runs = pd.DataFrame([summary for summary, _ in results]).reset_index(drop=True)
    counts = pd.concat([c for _, c in results], ignore_index=True)
    return runs, counts
