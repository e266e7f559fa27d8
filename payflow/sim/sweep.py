"""Sweeps: many (scenario, strategy, seed) runs on any executor, one tidy table.

Each run is a pure function of its arguments, so a sweep gives the same table
serially, on a process pool, or on a Dask cluster::

    from dask.distributed import Client
    with Client("tcp://scheduler:8786") as client:        # an existing cluster
        df = sweep(["slow-provider-day"], ["naive", "recommended"], range(20),
                   executor=client.get_executor())
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from typing import Any

import pandas as pd

__all__ = ["RATES", "SerialExecutor", "map_runs", "pool_seeds", "sweep", "wilson_interval"]

#: The rates a summary reports, each with the count it was computed from.
RATES: tuple[tuple[str, str], ...] = (
    ("harmed_rate", "harmed"),
    ("duplicate_charge_rate", "duplicate_charges"),
    ("duplicate_hold_rate", "duplicate_holds"),
    ("silent_charge_rate", "silent_charges"),
    ("told_failed_but_charged_rate", "told_failed_but_charged"),
    ("orphan_charge_rate", "orphan_charges"),
    ("orphan_hold_rate", "orphan_holds"),
    ("lost_sale_rate", "lost_sales"),
    ("shipped_rate", "shipped"),
    ("never_told_outcome_rate", "never_told_outcome"),
)


class SerialExecutor(Executor):
    """Runs each task at once in this process: the reference for "same numbers anywhere"."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future
            future.set_exception(exc)
        return future


def _run_one(scenario: Any, strategy: Any, seed: int, orders: int | None) -> dict[str, Any]:
    # Imported here so a worker process pays for the import once, on first use.
    from payflow.sim import run

    summary = dict(run(scenario, strategy, seed=seed, orders=orders, trace=False).summary)
    return summary


def _names(values: Iterable[Any] | str) -> list[Any]:
    return [values] if isinstance(values, str) else list(values)


def map_runs(
    fn: Callable[..., Any],
    scenarios: Iterable[Any] | str,
    strategies: Iterable[Any] | str,
    seeds: Iterable[int] | int,
    executor: Executor | None,
    extra: tuple[Any, ...] = (),
    progress: bool | None = None,
) -> list[Any]:
    """``fn(scenario, strategy, seed, *extra)`` for every combination, on ``executor``
    (default: a process pool, one worker per core), results in (scenario, strategy,
    seed) order. The engine of :func:`sweep` and of the per-hour sweep."""
    seed_list = [seeds] if isinstance(seeds, int) else list(seeds)
    for seed in seed_list:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seeds must be integers, got {seed!r}")
    tasks = [
        (scenario, strategy, seed)
        for scenario in _names(scenarios)
        for strategy in _names(strategies)
        for seed in seed_list
    ]
    if not tasks:
        raise ValueError("a sweep needs at least one scenario, one strategy and one seed")
    own = executor is None
    pool: Executor = executor or ProcessPoolExecutor(
        max_workers=max(1, min(len(tasks), os.cpu_count() or 1))
    )
    try:
        futures = [pool.submit(fn, sc, st, seed, *extra) for sc, st, seed in tasks]
        return [f.result() for f in _progress(futures, progress)]
    finally:
        if own:
            pool.shutdown(wait=True, cancel_futures=True)


def sweep(
    scenarios: Iterable[Any] | str,
    strategies: Iterable[Any] | str,
    seeds: Iterable[int] | int,
    executor: Executor | None = None,
    *,
    orders: int | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Run every (scenario, strategy, seed) and return one row per run.

    ``executor`` is any :class:`concurrent.futures.Executor`; by default a
    process pool with one worker per core. A Dask ``Client.get_executor()``
    works unchanged. Rows come back in (scenario, strategy, seed) order
    whatever order the workers finish in. ``progress`` shows a progress bar
    (default: when standard error is a terminal, or as a widget in JupyterLab; see
    :mod:`payflow.sim.progress`).
    """
    rows = map_runs(_run_one, scenarios, strategies, seeds, executor, (orders,), progress)
    return pd.DataFrame(rows).reset_index(drop=True)


def _progress(futures: Sequence[Any], enabled: bool | None) -> Iterable[Any]:
    from payflow.sim.progress import bar

    # A terminal gets a text bar, JupyterLab a widget (payflow.sim.progress).
    return bar(futures, desc="runs", unit="run", progress=enabled)


def wilson_interval(count: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval for ``count`` successes of ``total`` (95% by default).

    Unlike the normal approximation it is honest at 0 of N: 0 of 50 000 and
    0 of 5 give very different upper bounds.
    """
    if total <= 0:
        return (0.0, 1.0)
    p = count / total
    denom = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denom
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denom
    low = 0.0 if count <= 0 else max(0.0, centre - half)
    high = 1.0 if count >= total else min(1.0, centre + half)
    return (low, high)


def pool_seeds(runs: pd.DataFrame) -> pd.DataFrame:
    """Pool the seeds of each (scenario, strategy): rates with counts and 95% CIs.

    For each rate in :data:`RATES` the result has ``<count>`` (summed over seeds),
    ``orders`` (summed), the pooled rate, and ``<rate>_low`` / ``<rate>_high``
    (Wilson interval). Per-order means (timeouts, retries, calls) are averaged
    over seeds with a normal-approximation interval across seeds.
    """
    out: list[dict[str, Any]] = []
    for (scenario, strategy), group in runs.groupby(["scenario", "strategy"], sort=False):
        row: dict[str, Any] = {
            "scenario": scenario,
            "strategy": strategy,
            "seeds": len(group),
            "orders": int(group["orders"].sum()),
        }
        for rate, count in RATES:
            if count not in group:
                continue
            n = int(group[count].sum())
            low, high = wilson_interval(n, row["orders"])
            row[count] = n
            row[rate] = n / row["orders"] if row["orders"] else 0.0
            row[f"{rate}_low"], row[f"{rate}_high"] = low, high
        for mean in (
            "timeouts_per_order",
            "retries_per_order",
            "provider_calls_per_order",
            "feedback_p50_s",
            "feedback_p95_s",
            "feedback_p99_s",
            "outcome_p50_s",
            "outcome_p95_s",
            "outcome_p99_s",
        ):
            if mean not in group:
                continue
            values = group[mean].astype(float)
            if (values == math.inf).any():
                # A seed whose percentile is "never": so is the pooled one.
                row[mean], row[f"{mean}_low"], row[f"{mean}_high"] = math.inf, math.nan, math.nan
                continue
            m = float(values.mean())
            se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0
            row[mean], row[f"{mean}_low"], row[f"{mean}_high"] = m, m - 1.96 * se, m + 1.96 * se
        for total in ("refunds", "unresolved"):
            if total in group:
                row[total] = int(group[total].sum())
        if "cost_total" in group:
            # Money stays integer minor units: the pooled mean rounded to a unit.
            row["cost_total"] = int(group["cost_total"].sum())
            row["cost_per_order"] = round(row["cost_total"] / row["orders"]) if row["orders"] else 0
        out.append(row)
    return pd.DataFrame(out)
