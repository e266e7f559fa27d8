"""Why two strategies give the same numbers: measured, not inferred.

Two presets that differ in a knob can still give identical results when the
code path that knob adds is never reached on the days simulated. This module
checks that by experiment: :func:`path_counts` runs both strategies on the
same (scenario, seed) with timelines kept, compares every order's outcome,
and counts, in each strategy's timelines, the notes the day model writes only
on each differing knob's own branch (:data:`KNOB_PATHS`).
:func:`explain_identical` turns the counts into the sentence the report
prints::

    counts = path_counts("answer-b", "lock-only", ["slow-provider-day"], [0, 1], 2000)
    explain_identical("answer-b", "lock-only", counts)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from concurrent.futures import Executor
from typing import Any

import pandas as pd

from payflow.sim._strategies import Strategy, get_strategy

__all__ = ["KNOB_PATHS", "differing_settings", "explain_identical", "path_counts"]

#: For each knob, the (kind, text) of the trace note the day model
#: (payflow/sim/_model.py) writes on that knob's own branch and nowhere else; a
#: note matches when its kind is equal and its detail starts with the text.
#: When a knob's note never appears, the knob never changed what happened.
KNOB_PATHS: dict[str, tuple[tuple[str, str], ...]] = {
    "dedupe_paid": (("backend", "order already paid"),),
    "order_lock": (("backend", "order locked"),),
    "lock_until_answer": (("backend", "order locked: no answer from the provider yet"),),
    "debounce": (
        ("customer", "double click ignored (button disabled)"),
        ("customer", "clicks again (button disabled)"),
    ),
    "delay_notice_s": (("page", "this is taking longer than usual"),),
    "email": (("email", ""),),
    "reconcile": (("recheck", ""),),
    "operator_every_s": (("operator", ""),),
}

#: Settings that name or describe a strategy and change nothing it does.
_LABELS = ("name", "description")


def differing_settings(a: str | Strategy, b: str | Strategy) -> dict[str, tuple[Any, Any]]:
    """The knobs in which ``a`` and ``b`` differ: ``{knob: (value in a, value in b)}``
    (the core policy counts as one knob, ``policy``)."""
    sa, sb = get_strategy(a), get_strategy(b)
    return {
        f.name: (getattr(sa, f.name), getattr(sb, f.name))
        for f in dataclasses.fields(Strategy)
        if f.name not in _LABELS and getattr(sa, f.name) != getattr(sb, f.name)
    }


def _hits(result: Any, knobs: Sequence[str]) -> dict[str, int]:
    """How many timeline notes of each knob's own branch ``result``'s orders carry."""
    counts = dict.fromkeys(knobs, 0)
    for day in result._days or (result._day,):
        for order in day.orders:
            for entry in order.trace or ():
                if not isinstance(entry, tuple):
                    continue  # a core event (call, answer...), never a knob's note
                _, kind, detail = entry
                for knob in knobs:
                    if any(kind == k and detail.startswith(t) for k, t in KNOB_PATHS[knob]):
                        counts[knob] += 1
    return counts


def _counted(a: Any, b: Any) -> list[str]:
    """The knobs whose branches are counted: those that differ, then those on in both
    (what they did explains why the differing branch was never needed)."""
    sa, sb = get_strategy(a), get_strategy(b)
    differ = [k for k in differing_settings(sa, sb) if k in KNOB_PATHS]
    shared = [
        k for k in KNOB_PATHS if k not in differ and _on(getattr(sa, k)) and _on(getattr(sb, k))
    ]
    return differ + shared


def _pair(scenario: Any, a: Any, seed: int, b: Any, orders: int | None) -> dict[str, Any]:
    """One (scenario, seed): both strategies' outcomes compared and branch notes counted."""
    from payflow.sim._runner import run

    knobs = _counted(a, b)
    ra = run(scenario, a, seed=seed, orders=orders, trace=True)
    rb = run(scenario, b, seed=seed, orders=orders, trace=True)
    fa = ra.orders.drop(columns=["strategy"], errors="ignore").reset_index(drop=True)
    fb = rb.orders.drop(columns=["strategy"], errors="ignore").reset_index(drop=True)
    same = (fa == fb) | (fa.isna() & fb.isna())
    row: dict[str, Any] = {
        "scenario": ra.summary["scenario"],
        "seed": seed,
        "orders": len(fa),
        "orders_differing": int((~same.all(axis=1)).sum()),
    }
    ha, hb = _hits(ra, knobs), _hits(rb, knobs)
    for knob in knobs:
        row[f"{knob}: {ra.strategy.name}"] = ha[knob]
        row[f"{knob}: {rb.strategy.name}"] = hb[knob]
    return row


def path_counts(
    a: str | Strategy,
    b: str | Strategy,
    scenarios: Iterable[Any],
    seeds: Iterable[int],
    orders: int | None = None,
    executor: Executor | None = None,
) -> pd.DataFrame:
    """Run ``a`` and ``b`` on every (scenario, seed) with timelines kept.

    One row per (scenario, seed): ``orders``, ``orders_differing`` (orders whose
    row in :attr:`Result.orders` differs between the two), and for each differing
    knob listed in :data:`KNOB_PATHS` the number of its branch's notes in each
    strategy's timelines (columns ``"<knob>: <strategy>"``). Runs on ``executor``
    (a process pool by default), as a sweep does.
    """
    from payflow.sim.sweep import map_runs

    rows = map_runs(_pair, list(scenarios), [a], list(seeds), executor, (b, orders), False)
    return pd.DataFrame(rows)


def explain_identical(a: str | Strategy, b: str | Strategy, counts: pd.DataFrame) -> str:
    """The sentence a report prints when ``a`` and ``b`` give identical rows, from
    :func:`path_counts`: which settings differ, and whether their code ran."""
    sa, sb = get_strategy(a), get_strategy(b)
    diff = differing_settings(sa, sb)
    runs, orders = len(counts), int(counts["orders"].sum())
    differing = int(counts["orders_differing"].sum())
    knobs = ", ".join(
        f"{k} ({_show(va)} in {sa.name}, {_show(vb)} in {sb.name})" for k, (va, vb) in diff.items()
    )
    text = (
        f"{sa.name} and {sb.name} differ only in {knobs}. Measured on the same "
        f"{runs} runs ({orders:,} orders per strategy, timelines kept): "
    )
    parts = []
    for knob in diff:
        if knob not in KNOB_PATHS:
            parts.append(f"{knob} has no branch note to count")
            continue
        na = int(counts[f"{knob}: {sa.name}"].sum())
        nb = int(counts[f"{knob}: {sb.name}"].sum())
        on, n = (sa.name, na) if _on(diff[knob][0]) else (sb.name, nb)
        branch = " / ".join(f"'{t}'" for _, t in KNOB_PATHS[knob])
        parts.append(
            f"the branch {knob} adds ({branch}) ran {n:,} times in {on}"
            + (" — never, so it cannot change a number" if n == 0 else "")
        )
    text += "; ".join(parts) + ". "
    shared = [k for k in _counted(sa, sb) if k not in diff]
    if shared:
        text += (
            "Meanwhile, in both, "
            + "; ".join(
                f"the shared {k} branch ("
                + " / ".join(f"'{t}'" for _, t in KNOB_PATHS[k])
                + f") ran {int(counts[f'{k}: {sa.name}'].sum()):,} times"
                for k in shared
            )
            + ". "
        )
    text += (
        "Every order's outcome is the same in both."
        if differing == 0
        else f"{differing:,} orders' outcomes differ (the summaries agree only by chance)."
    )
    return text


def _on(value: Any) -> bool:
    return value is not None and value is not False


def _show(value: Any) -> str:
    if value is None or value is False:
        return "off"
    if value is True:
        return "on"
    return str(value) if not isinstance(value, float) else f"{value:g}"
