"""Backend crashes: where each payment was when the shop died, and how it ended.

A scenario's ``backend.crashes`` interrupt every running pay flow; the journal
survives. :func:`with_crashes` adds crashes to a scenario, :func:`interrupted`
reads a traced :class:`payflow.sim.Result` and returns one row per pay flow a
crash killed: the step it was at, what recovery did and how the order ended::

    from payflow.sim import run, crashes
    day = crashes.with_crashes("slow-provider-day", crashes.every(9, 18, 600))
    result = run(day, "recommended", seed=0, orders=500)
    crashes.interrupted(result)
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pandas as pd

from payflow.sim._scenarios import Scenario, load_scenario

__all__ = ["ENDS", "POINTS", "end_table", "every", "interrupted", "with_crashes"]

#: The step a killed flow was at, by the operation of its last call.
POINTS: dict[str, str] = {
    "create": "creating the payment",
    "poll": "waiting for the payer",
    "capture": "capturing",
    "lookup": "looking up an unknown create",
    "cancel": "cancelling",
    "status": "reading the status",
    "refund": "refunding",
}

#: How an interrupted order ended, worst first.
ENDS: tuple[str, ...] = (
    "charged twice",
    "money taken, not shipped",
    "still unknown",
    "refunded",
    "nothing taken",
    "charged once, shipped",
)

_KILLED = "pay flow killed by a crash"
_CALL = re.compile(r"^(\w+) #")
_RECHECK = re.compile(r"^(\w+): (\w+) \(")


def every(start_hour: float, end_hour: float, interval_s: float) -> tuple[float, ...]:
    """Crash times (seconds since midnight) every ``interval_s`` from start to end hour."""
    if not interval_s > 0:
        raise ValueError(f"interval_s: must be > 0, got {interval_s!r}")
    if not 0 <= start_hour <= end_hour <= 24:
        raise ValueError("start_hour/end_hour: must satisfy 0 <= start <= end <= 24")
    times: list[float] = []
    t = start_hour * 3600.0
    while t <= end_hour * 3600.0:
        times.append(t)
        t += interval_s
    return tuple(times)


def with_crashes(
    scenario: str | Scenario, times: tuple[float, ...], restart_s: float | None = None
) -> Scenario:
    """``scenario`` whose backend crashes at ``times`` (seconds since midnight).

    ``restart_s`` (default: the scenario's) is how long the backend stays down.
    The name gets a ``+crashes`` suffix.
    """
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    backend = replace(
        sc.backend,
        crashes=tuple(sorted(float(t) for t in times)),
        restart_s=sc.backend.restart_s if restart_s is None else float(restart_s),
    )
    return replace(sc, name=f"{sc.name}+crashes", backend=backend)


def _end(row: Any) -> str:
    if row["duplicate_charge"]:
        return "charged twice"
    if row["orphan_charge"]:
        return "money taken, not shipped"
    if row["unresolved"]:
        return "still unknown"
    if row["charged"] and row["fulfilled"]:
        return "charged once, shipped"
    if row["refunds"]:
        return "refunded"
    return "nothing taken"


def interrupted(result: Any) -> pd.DataFrame:
    """One row per pay flow a crash killed (a traced ``Result`` is needed).

    Columns: ``order_id``, ``crash_at_s``, ``step`` (the operation of the
    flow's last call, see :data:`POINTS`), ``in_flight`` (that call had no
    answer yet), ``settled_by`` (``"restart recovery"``: a recheck within
    ``restart_s`` + 60 s of the crash's restart; ``"periodic recheck"``: a
    later one; ``"customer"``: a new pay flow of the order finished it;
    ``"nothing"``), ``settled_after_s`` (crash to the recheck that settled the
    order, NaN if none), ``end`` (see :data:`ENDS`), plus the order's
    ``amount``, ``charged``, ``refunds``, ``fulfilled``, ``orphan_charge``,
    ``unresolved``.
    """
    restart = float(result.scenario.backend.restart_s)
    orders = result.orders.set_index("order_id")
    rows: list[dict[str, Any]] = []
    for order_id in orders.index:
        trace = result.trace(order_id)
        details = trace["detail"].astype(str).tolist()
        if _KILLED not in details:
            continue
        kinds = trace["kind"].tolist()
        times = trace["at_s"].astype(float).tolist()
        order = orders.loc[order_id]
        for i, detail in enumerate(details):
            if detail != _KILLED:
                continue
            crash_at = times[i]
            step, in_flight = "before any call", False
            for j in range(i - 1, -1, -1):
                if kinds[j] in ("answer", "timeout"):
                    in_flight = False if step == "before any call" else in_flight
                    if step == "before any call":
                        step = "answered"
                if kinds[j] == "call":
                    match = _CALL.match(details[j])
                    op = match.group(1) if match else details[j]
                    in_flight = step == "before any call"
                    step = POINTS.get(op, op)
                    break
                if kinds[j] == "backend" and details[j] == "pay flow starts":
                    break
            settled_by, settled_at = "nothing", float("nan")
            for j in range(i + 1, len(details)):
                if kinds[j] == "recheck":
                    match = _RECHECK.match(details[j])
                    if match and match.group(2) != "kept":
                        settled_at = times[j]
                        late = times[j] - crash_at > restart + 60.0
                        settled_by = "periodic recheck" if late else "restart recovery"
                        break
                if kinds[j] == "backend" and details[j].startswith("pay flow ends"):
                    settled_by, settled_at = "customer", times[j]
                    break
            rows.append(
                {
                    "order_id": order_id,
                    "crash_at_s": crash_at,
                    "step": step,
                    "in_flight": in_flight,
                    "settled_by": settled_by,
                    "settled_after_s": settled_at - crash_at,
                    "end": _end(order),
                    "amount": int(order["amount"]),
                    "charged": int(order["charged"]),
                    "refunds": int(order["refunds"]),
                    "fulfilled": bool(order["fulfilled"]),
                    "orphan_charge": bool(order["orphan_charge"]),
                    "unresolved": bool(order["unresolved"]),
                }
            )
    columns = [
        "order_id", "crash_at_s", "step", "in_flight", "settled_by", "settled_after_s", "end",
        "amount", "charged", "refunds", "fulfilled", "orphan_charge", "unresolved",
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def end_table(frame: pd.DataFrame, by: str, column: str = "end") -> pd.DataFrame:
    """Counts of ``column`` values per ``by`` value: rows ``by``, columns in :data:`ENDS` order."""
    table = pd.crosstab(frame[by], frame[column])
    order = [c for c in ENDS if c in table.columns] + [c for c in table.columns if c not in ENDS]
    return table.reindex(columns=order, fill_value=0)
