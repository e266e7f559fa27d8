"""Tune: which settings of a strategy hurt least on a day? ``payflow tune`` and :func:`tune`.

::

    from payflow.sim import tune
    df = tune("slow-provider-day", "recommended",
              {"timeout_s": [1, 2, 4, 8], "retries": [0, 1, 2]}, seeds=range(3), orders=2000)
    df[df.pareto]

Every point of the grid (or a seeded random or Latin-hypercube sample of it, for
large spaces) is the base strategy with those knobs (:meth:`Strategy.but`), run
on every seed; the seeds of a point are pooled as :func:`payflow.sim.sweep.pool_seeds`
pools them (rates with Wilson intervals, per-order means and percentiles with a
normal interval across seeds). ``pareto`` marks the points no other point beats
on all of ``cost_per_order``, ``outcome_p95_s`` and ``provider_calls_per_order``
(lower is better; equal on all three is not beaten). Runs on any
:class:`concurrent.futures.Executor`, like :func:`~payflow.sim.sweep`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Final

import pandas as pd

from payflow.sim._runner import check_orders, resolve_scenario
from payflow.sim._scenarios import Scenario
from payflow.sim._strategies import Strategy, get_strategy
from payflow.sim.sweep import _run_one, map_runs, pool_seeds

__all__ = ["OBJECTIVES", "pareto_mask", "register", "space_points", "tune", "tune_table"]

#: What ``pareto`` minimises.
OBJECTIVES: Final = ("cost_per_order", "outcome_p95_s", "provider_calls_per_order")


def space_points(
    space: Mapping[str, Sequence[Any]],
    sample: int | None = None,
    method: str = "lhs",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The points of ``space``: the whole grid, or ``sample`` of them when the grid
    is larger (``method`` "lhs": a Latin hypercube over each knob's values, or
    "random": drawn without replacement), seeded by ``seed``. Grid order; no repeats."""
    if not space:
        raise ValueError("space: give at least one knob and its values")
    names = list(space)
    values = []
    for name in names:
        vals = list(space[name])
        if not vals:
            raise ValueError(f"space.{name}: give at least one value")
        values.append(vals)
    size = math.prod(len(v) for v in values)
    if sample is None or sample >= size:
        return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*values)]
    if isinstance(sample, bool) or not isinstance(sample, int) or sample < 1:
        raise ValueError(f"sample: must be an integer >= 1, got {sample!r}")
    rng = random.Random(f"payflow-tune:{seed}")
    chosen: set[tuple[int, ...]] = set()
    if method == "random":
        for flat in rng.sample(range(size), sample):
            index = []
            for v in reversed(values):
                flat, i = divmod(flat, len(v))
                index.append(i)
            chosen.add(tuple(reversed(index)))
    elif method == "lhs":
        strata = []
        for v in values:
            perm = list(range(sample))
            rng.shuffle(perm)
            strata.append(
                [min(len(v) - 1, int((p + rng.random()) / sample * len(v))) for p in perm]
            )
        chosen = {tuple(s[k] for s in strata) for k in range(sample)}
        # repeats (two strata on one grid value) are topped up at random
        while len(chosen) < sample:
            chosen.add(tuple(rng.randrange(len(v)) for v in values))
    else:
        raise ValueError(f"method: must be 'lhs' or 'random', got {method!r}")
    return [
        {n: v[i] for n, v, i in zip(names, values, index, strict=True)} for index in sorted(chosen)
    ]


def pareto_mask(frame: pd.DataFrame, objectives: Sequence[str] = OBJECTIVES) -> list[bool]:
    """True for each row no other row dominates (<= on every objective, < on one).
    NaN counts as the worst value."""
    points = [
        tuple(math.inf if pd.isna(v) else float(v) for v in row)
        for row in frame[list(objectives)].itertuples(index=False)
    ]
    return [
        not any(
            all(o <= p for o, p in zip(other, point, strict=True)) and other != point
            for other in points
        )
        for point in points
    ]


def _label(base: str, point: Mapping[str, Any]) -> str:
    return base + "[" + ",".join(f"{k}={v}" for k, v in point.items()) + "]"


def tune(
    scenario: str | Scenario,
    base_strategy: str | Strategy,
    space: Mapping[str, Sequence[Any]],
    seeds: Iterable[int] | int = range(3),
    orders: int = 2000,
    executor: Executor | None = None,
    *,
    sample: int | None = None,
    method: str = "lhs",
    sample_seed: int = 0,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per point of ``space`` (see the module docs): the knobs under their
    own names, ``strategy`` (the base's name) and ``label``, the summary pooled over
    ``seeds`` with intervals, and ``pareto``. Same arguments, same table, on any
    executor (default: a process pool)."""
    sc = resolve_scenario(scenario)
    base = get_strategy(base_strategy)
    check_orders("orders", orders)
    points = space_points(space, sample, method, sample_seed)
    strategies = [base.but(**p).but(name=_label(base.name, p)) for p in points]  # checks knobs
    runs = pd.DataFrame(map_runs(_run_one, [sc], strategies, seeds, executor, (orders,), progress))
    pooled = pool_seeds(runs)
    per_seed = runs.groupby("strategy", sort=False)["cost_per_order"]
    cost_mean = per_seed.mean()
    cost_se = per_seed.std(ddof=1).fillna(0.0) / per_seed.count().pow(0.5)
    knobs = pd.DataFrame(points)
    pooled = pooled.rename(columns={"strategy": "label"})
    pooled.insert(1, "strategy", base.name)
    pooled["cost_per_order_low"] = [cost_mean[lbl] - 1.96 * cost_se[lbl] for lbl in pooled["label"]]
    pooled["cost_per_order_high"] = [
        cost_mean[lbl] + 1.96 * cost_se[lbl] for lbl in pooled["label"]
    ]
    pooled["seed"] = [sorted(set(runs["seed"]))] * len(pooled)
    table = pd.concat([knobs, pooled], axis=1)
    table["pareto"] = pareto_mask(table)
    return table


def tune_table(frame: pd.DataFrame, currency: str = "") -> pd.DataFrame:
    """The tune result as a reader's table, cheapest first: the knobs, shipped,
    harmed (duplicate + silent + orphan + told-failed-but-charged), time to outcome
    p95, calls per order, cost per order with its interval, and ``pareto``. For the
    report's verdict (``payflow report --tune``)."""
    knobs = list(frame.columns[: list(frame.columns).index("scenario")])
    harmed = sum(
        frame[c]
        for c in (
            "duplicate_charges",
            "silent_charges",
            "orphan_charges",
            "told_failed_but_charged",
        )
        if c in frame
    )
    out = frame[knobs].copy()
    out["shipped"] = frame["shipped_rate"]
    out["harmed"] = harmed / frame["orders"]
    out["outcome_p95_s"] = frame["outcome_p95_s"]
    out["calls_per_order"] = frame["provider_calls_per_order"]
    unit = f" ({currency})" if currency else ""
    out[f"cost_per_order{unit}"] = frame["cost_per_order"]
    out["cost_low"] = frame["cost_per_order_low"]
    out["cost_high"] = frame["cost_per_order_high"]
    out["pareto"] = frame["pareto"]
    return out.sort_values([f"cost_per_order{unit}", "outcome_p95_s"]).reset_index(drop=True)


# ------------------------------------------------------------------ command line
def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _param(text: str) -> tuple[str, list[Any]]:
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or not name or not values.strip():
        raise argparse.ArgumentTypeError(f"--param: {text!r} must be KNOB=v1,v2,...")
    return name, [_value(v) for v in values.split(",") if v.strip()]


def register(subparsers: Any) -> None:
    """Add ``tune`` to the ``payflow`` command."""
    parser = subparsers.add_parser(
        "tune",
        help="find the settings of a strategy that hurt least on a day",
        description="Run a strategy with every combination of knob values (--param) on a "
        "scenario, pool the seeds, and mark the Pareto front (cost per order, time to "
        "outcome p95, provider calls per order).",
    )
    parser.add_argument("--scenario", required=True, metavar="NAME_OR_PATH")
    parser.add_argument("--strategy", required=True, metavar="NAME", help="the base preset")
    parser.add_argument(
        "--param",
        action="append",
        type=_param,
        required=True,
        metavar="KNOB=v1,v2",
        help="a knob of Strategy.but and its values (repeatable)",
    )
    parser.add_argument("--seeds", type=int, default=3, metavar="N", help="seeds 0..N-1")
    parser.add_argument("--orders", type=int, default=2000, metavar="N", help="orders per run")
    parser.add_argument(
        "--sample", type=int, default=None, metavar="N", help="run N points of a larger grid"
    )
    parser.add_argument("--method", choices=["lhs", "random"], default="lhs")
    parser.add_argument("--workers", type=int, default=None, metavar="N", help="processes")
    parser.add_argument("--json", action="store_true", help="print a JSON list, one per point")
    parser.add_argument("--out", metavar="DIR", help="write tune.csv and pareto.png here")
    parser.set_defaults(handler=_main)


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_value(value.item())
    return value


def _main(args: argparse.Namespace) -> int:
    from concurrent.futures import ProcessPoolExecutor

    if args.seeds < 1:
        raise ValueError(f"--seeds: must be >= 1, got {args.seeds}")
    space: dict[str, list[Any]] = {}
    for name, values in args.param:
        if name in space:
            raise ValueError(f"--param: {name} given twice")
        space[name] = values
    executor = None
    if args.workers is not None:
        if args.workers < 1:
            raise ValueError(f"--workers: must be >= 1, got {args.workers}")
        executor = ProcessPoolExecutor(max_workers=args.workers)
    try:
        table = tune(
            args.scenario,
            args.strategy,
            space,
            seeds=range(args.seeds),
            orders=args.orders,
            executor=executor,
            sample=args.sample,
            method=args.method,
            progress=None if not args.json else False,
        )
    finally:
        if executor is not None:
            executor.shutdown()
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "tune.csv", index=False)
        import matplotlib

        from payflow.plots import pareto

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        ax = pareto(table)
        figure = ax.get_figure(root=True)
        assert figure is not None
        figure.savefig(out / "pareto.png", dpi=120)
        plt.close(figure)
    if args.json:
        rows = []
        for record in table.to_dict(orient="records"):
            rows.append({str(k): _json_value(v) for k, v in record.items()})
        print(json.dumps(rows, indent=2))
    else:
        view = tune_table(table)
        with pd.option_context("display.width", 200, "display.max_columns", 30):
            print(view.to_string(index=False, float_format=lambda x: f"{x:.3g}"))
        if args.out:
            print(f"wrote {Path(args.out) / 'tune.csv'} and {Path(args.out) / 'pareto.png'}")
    return 0
