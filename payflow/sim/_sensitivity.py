"""Does the verdict survive other guesses? One assumption at a time.

:func:`sensitivity` re-runs a scenario with one customer or provider assumption
moved to each end of a stated range (the rest as the scenario says), for the
given strategies, and records which strategy is cheapest each time;
:func:`ranking_holds` says in one sentence whether the cheapest stays cheapest::

    df = sensitivity("slow-provider-day", ["naive", "recommended"], seeds=[0], orders=300)
    holds, sentence = ranking_holds(df)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd

from payflow.provider.faults import FaultProfile
from payflow.sim._scenarios import Scenario

__all__ = ["ASSUMPTIONS", "LatencyScaled", "ranking_holds", "sensitivity", "vary"]


#: Assumption -> (the values tried, how a value changes a scenario, unit).
ASSUMPTIONS: dict[str, tuple[tuple[float, ...], str]] = {
    "click_again": ((0.2, 0.8), "share of customers who click again when patience runs out"),
    "patience_median_s": ((10.0, 90.0), "customers' median patience on the page (s)"),
    "email_patience_median_s": ((600.0, 4 * 3600.0), "median wait for a promised email (s)"),
    "provider_latency_x": ((0.5, 2.0), "provider latency, times the profile's"),
}


def vary(scenario: Any, assumption: str, value: float) -> Any:
    """The scenario with one assumption set to ``value``."""
    from payflow.sim._runner import resolve_scenario

    sc = resolve_scenario(scenario)
    if assumption not in ASSUMPTIONS:
        raise LookupError(f"assumption {assumption!r}: choose from {', '.join(ASSUMPTIONS)}")
    if assumption == "provider_latency_x":
        fields = {f: getattr(sc, f) for f in Scenario.__dataclass_fields__}
        return LatencyScaled(**fields, latency_x=float(value))
    if assumption == "click_again":
        value = min(value, 1.0 - sc.customers.reload)
    change: dict[str, Any] = {assumption: value}
    return replace(sc, customers=replace(sc.customers, **change))


@dataclass(frozen=True, slots=True)
class LatencyScaled(Scenario):
    """A scenario whose provider is ``latency_x`` times as slow (errors unchanged)."""

    latency_x: float = 1.0

    def profile(self) -> FaultProfile:
        base = Scenario.profile(self)
        frames = [
            (
                t,
                replace(
                    f,
                    latency_before_s=f.latency_before_s * self.latency_x,
                    latency_after_s=f.latency_after_s * self.latency_x,
                ),
            )
            for t, f in base.keyframes
        ]
        return FaultProfile(f"{base.name} x{self.latency_x:g}", frames, base.description)


def _one(
    scenario: Any, strategy: Any, seed: int, orders: int | None, label: tuple[str, float]
) -> dict[str, Any]:
    from payflow.sim import run

    summary = dict(run(scenario, strategy, seed=seed, orders=orders, trace=False).summary)
    summary["assumption"], summary["value"] = label
    return summary


def sensitivity(
    scenario: str,
    strategies: Sequence[str],
    seeds: Iterable[int] = (0,),
    orders: int | None = 400,
    assumptions: dict[str, tuple[float, ...]] | None = None,
    executor: Executor | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """One row per (assumption, value): the cheapest strategy there (``best``, its
    ``best_cost``), the baseline's cheapest (``base``, ``base_cost``) and the full
    ranking (``ranking``, cheapest first). Costs are per order in minor units.
    ``progress`` shows one bar over the assumptions' values (by default in a
    terminal, and as a widget in JupyterLab)."""
    from payflow.sim.progress import bar
    from payflow.sim.sweep import map_runs, pool_seeds

    tried = {k: v for k, (v, _) in ASSUMPTIONS.items()} if assumptions is None else assumptions
    seed_list = list(seeds)
    # One bar for the whole study, not one per sweep inside it.
    base_runs = map_runs(
        _one, [scenario], list(strategies), seed_list, executor, (orders, ("baseline", 0.0)), False
    )
    base = pool_seeds(pd.DataFrame(base_runs)).sort_values(["cost_per_order", "strategy"])
    jobs = [(a, v) for a, values in tried.items() for v in values]
    rows = []
    for assumption, value in bar(jobs, desc="assumptions", unit="value", progress=progress):
        sc = vary(scenario, assumption, value)
        runs = map_runs(
            _one, [sc], list(strategies), seed_list, executor, (orders, (assumption, value)), False
        )
        s = pool_seeds(pd.DataFrame(runs)).sort_values(["cost_per_order", "strategy"])
        rows.append(
            {
                "assumption": assumption,
                "value": value,
                "best": str(s["strategy"].iloc[0]),
                "best_cost": int(s["cost_per_order"].iloc[0]),
                "base": str(base["strategy"].iloc[0]),
                "base_cost": int(base["cost_per_order"].iloc[0]),
                "ranking": " < ".join(str(x) for x in s["strategy"]),
                "same_ranking": list(s["strategy"]) == list(base["strategy"]),
            }
        )
    return pd.DataFrame(rows)


def ranking_holds(df: pd.DataFrame) -> tuple[bool, str]:
    """Whether the cheapest strategy stays cheapest under every assumption tried, in words."""
    if df.empty:
        return True, "No assumptions were varied."
    base = str(df["base"].iloc[0])
    moved = df[df["best"] != base]
    reorders = int((~df["same_ranking"].astype(bool)).sum())
    tried = ", ".join(
        f"{a} {g['value'].min():g}–{g['value'].max():g}"
        for a, g in df.groupby("assumption", sort=False)
    )
    if moved.empty:
        return True, (
            f"{base} stays cheapest under every assumption tried ({tried}); "
            f"the full ranking changes in {reorders} of {len(df)} cases."
        )
    where = "; ".join(f"{r.assumption} = {r.value:g}: {r.best}" for r in moved.itertuples())
    return False, f"{base} is cheapest at the scenario's own assumptions but not at {where}."
