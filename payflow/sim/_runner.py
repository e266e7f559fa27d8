"""``payflow.sim.run``: one scenario, one strategy, one seed -> a result.

>>> result = run("slow-provider-day", "naive", seed=1, orders=300)   # doctest: +SKIP
>>> result.summary["duplicate_charge_rate"]                         # doctest: +SKIP
>>> result.orders.head()                                             # doctest: +SKIP
>>> result.trace("order-000042")                                     # doctest: +SKIP
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import pandas as pd

from payflow.sim._metrics import order_frame, summarize_run, trace_frame
from payflow.sim._model import Day
from payflow.sim._provider import ProviderStats
from payflow.sim._scenarios import Scenario, load_scenario
from payflow.sim._strategies import Strategy, get_strategy

__all__ = [
    "MAX_ORDERS",
    "TRACE_AUTO_MAX_ORDERS",
    "Result",
    "check_orders",
    "resolve_scenario",
    "run",
]

#: The most orders one run takes: a thousand times the scenarios' days; a larger
#: count is almost surely a typo and would only exhaust memory.
MAX_ORDERS = 2_000_000

#: ``run(trace=None)`` keeps timelines for runs up to this many orders.
TRACE_AUTO_MAX_ORDERS = 20_000


@dataclass(frozen=True)
class Result:
    """What one run produced.

    ``orders``: one row per tracked order (:data:`payflow.sim._metrics.ORDER_COLUMNS`);
    ``summary``: the contract keys (rates with their counts) and extras;
    ``provider``: the provider queue's statistics, summed over the simulated days.
    """

    scenario: Scenario
    strategy: Strategy
    seed: int
    orders: pd.DataFrame
    summary: dict[str, Any]
    provider: ProviderStats
    _day: Day | None = field(default=None, repr=False, compare=False)
    #: Every simulated day when traces are kept (``_day`` is the first).
    _days: tuple[Day, ...] = field(default=(), repr=False, compare=False)
    #: ``"payments"``: the ledger's payments at the end of the run, by order id (one
    #: snapshot, taken on the first ``trace()``: reading every timeline stays linear).
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def trace(self, order_id: str | int) -> pd.DataFrame:
        """One order's timeline (``order_id`` or its 1-based number) for plotting.

        Raises :class:`LookupError` for an unknown order and :class:`ValueError`
        if the run was made with ``trace=False``.
        """
        if self._day is None:
            raise ValueError("this result keeps no traces (run with trace=True)")
        days = self._days or (self._day,)
        key = f"order-{order_id:06d}" if isinstance(order_id, int) else order_id
        day, order = days[0], None
        for day in days:
            order = day.by_id.get(key)
            if order is not None:
                break
        if order is None:
            total = sum(len(d.orders) for d in days)
            raise LookupError(f"no order {order_id!r} in this run (1..{total})")
        if order.trace is None:
            raise ValueError("this result keeps no traces (run with trace=True)")
        frame = trace_frame(order)
        # The ground truth at the end of the run: what each payment of the order became.
        end = day.env.now
        cache_key = f"payments/{day.replica}"
        final: dict[str, list[dict[str, Any]]] | None = self._cache.get(cache_key)
        if final is None:
            final = {}
            for p in day.ledger.snapshot(end)["payments"]:
                final.setdefault(str(p["orderId"]), []).append(p)
            self._cache[cache_key] = final  # published whole: a reader sees all or nothing
        rows = [
            (
                order.order_id,
                end,
                "ledger",
                f"payment {p['paymentId']} ends {p['state']}, {p['amount']} "
                f"(refunded {p['refundedAmount']})",
            )
            for p in final.get(order.order_id, ())
        ]
        if not rows:
            return frame
        extra = pd.DataFrame(rows, columns=list(frame.columns))
        return pd.concat([frame, extra], ignore_index=True)


def resolve_scenario(scenario: str | Scenario) -> Scenario:
    """A scenario value from a name (or a path to a TOML file)."""
    return scenario if isinstance(scenario, Scenario) else load_scenario(scenario)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}: must be an integer >= {minimum}, got {value!r}")
    return value


def check_orders(name: str, value: Any) -> int:
    """``value`` as an order count: an integer from 1 to :data:`MAX_ORDERS` (else ValueError)."""
    count = _check_int(name, value, 1)
    if count > MAX_ORDERS:
        raise ValueError(f"{name}: must be at most {MAX_ORDERS}, got {count}")
    return count


def run(
    scenario: str | Scenario,
    strategy: str | Strategy,
    seed: int = 0,
    orders: int | None = None,
    *,
    trace: bool | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> Result:
    """Simulate one day of ``scenario`` under ``strategy``.

    ``orders`` sets how many orders are tracked (the sample), never the load:
    the provider always serves the scenario's ``traffic.day_orders`` orders a
    day. A run simulates as many independent days of that load as the sample
    needs (replica 0 is the seed's day, the same for any sample size) and
    tracks ``orders`` of their orders drawn at random (all of them when the
    days hold exactly that many). At most :data:`MAX_ORDERS` (a ValueError
    naming ``orders`` otherwise).
    ``trace`` keeps each order's timeline for :meth:`Result.trace` (about 5 kB
    an order); ``None`` keeps them when the simulated days hold up to
    :data:`TRACE_AUTO_MAX_ORDERS` orders.
    ``progress(now, end)`` is called every simulated quarter hour.
    Same arguments, same result.
    """
    seed = _check_int("seed", seed, 0)
    sc = resolve_scenario(scenario)
    st = get_strategy(strategy)
    if orders is not None:
        sc = sc.with_orders(check_orders("orders", orders))
    else:
        check_orders("traffic.orders", sc.traffic.orders)
    tracked = sc.traffic.orders
    per_day = sc.traffic.day_orders
    replicas = math.ceil(tracked / per_day)
    if trace is None:
        trace = replicas * per_day <= TRACE_AUTO_MAX_ORDERS
    frames: list[pd.DataFrame] = []
    days: list[Day] = []
    stats: list[ProviderStats] = []
    for replica in range(replicas):
        day_progress = None
        if progress is not None:

            def day_progress(now: float, end: float, _r: int = replica) -> None:
                assert progress is not None
                progress(_r * end + now, replicas * end)

        day = Day(sc, st, seed, trace=trace, replica=replica).run(day_progress)
        frames.append(order_frame(day))
        stats.append(day.provider.stats)
        if trace:
            days.append(day)
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    if len(frame) > tracked:
        # The sample: ``tracked`` orders of the simulated days, drawn without replacement.
        keep = sorted(random.Random(f"{seed}:sample").sample(range(len(frame)), tracked))
        frame = frame.iloc[keep].reset_index(drop=True)
    summary = summarize_run(frame, scenario=sc.name, strategy=st.name, seed=seed)
    summary["currency"] = sc.traffic.currency
    summary["orders_per_day"] = per_day
    summary["simulated_orders"] = replicas * per_day
    first = days[0] if days else None
    return Result(sc, st, seed, frame, summary, _merge_stats(stats), first, tuple(days))


def _merge_stats(stats: list[ProviderStats]) -> ProviderStats:
    """The provider statistics of several days as one: totals, the largest queue,
    and the queue over the mean day (each day is its own provider from t = 0)."""
    if len(stats) == 1:
        return stats[0]
    merged = ProviderStats()
    for f in fields(ProviderStats):
        values = [getattr(s, f.name) for s in stats]
        if f.name == "max_queue":
            setattr(merged, f.name, max(values))
        elif f.name == "queue_slot_s":
            setattr(merged, f.name, values[0])
        elif f.name == "queue_by_slot":
            slots = max(len(v) for v in values)
            merged.queue_by_slot = [
                sum(v[i] for v in values if i < len(v)) / len(values) for i in range(slots)
            ]
        else:
            setattr(merged, f.name, sum(values))
    return merged
