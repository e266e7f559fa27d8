"""``payflow.sim.run``: one scenario, one strategy, one seed -> a result.

>>> result = run("slow-provider-day", "naive", seed=1, orders=300)   # doctest: +SKIP
>>> result.summary["duplicate_charge_rate"]                         # doctest: +SKIP
>>> result.orders.head()                                             # doctest: +SKIP
>>> result.trace("order-000042")                                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from payflow.sim.metrics import order_frame, summarize, trace_frame
from payflow.sim.model import Day
from payflow.sim.provider import ProviderStats
from payflow.sim.scenarios import Scenario, load_scenario
from payflow.sim.strategies import Strategy, get_strategy

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

    ``orders``: one row per order (:data:`payflow.sim.metrics.ORDER_COLUMNS`);
    ``summary``: the contract keys (rates with their counts) and extras;
    ``provider``: the provider queue's statistics.
    """

    scenario: Scenario
    strategy: Strategy
    seed: int
    orders: pd.DataFrame
    summary: dict[str, Any]
    provider: ProviderStats
    _day: Day | None = field(default=None, repr=False, compare=False)
    #: ``"payments"``: the ledger's payments at the end of the run, by order id (one
    #: snapshot, taken on the first ``trace()``: reading every timeline stays linear).
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def trace(self, order_id: str | int) -> pd.DataFrame:
        """One order's timeline (``order_id`` or its 1-based number) for plotting.

        Raises :class:`LookupError` for an unknown order and :class:`ValueError`
        if the run was made with ``trace=False``.
        """
        day = self._day
        if day is None:
            raise ValueError("this result keeps no traces (run with trace=True)")
        key = f"order-{order_id:06d}" if isinstance(order_id, int) else order_id
        order = day.by_id.get(key)
        if order is None:
            raise LookupError(f"no order {order_id!r} in this run (1..{len(day.orders)})")
        if order.trace is None:
            raise ValueError("this result keeps no traces (run with trace=True)")
        frame = trace_frame(order)
        # The ground truth at the end of the run: what each payment of the order became.
        end = day.env.now
        final: dict[str, list[dict[str, Any]]] | None = self._cache.get("payments")
        if final is None:
            final = {}
            for p in day.ledger.snapshot(end)["payments"]:
                final.setdefault(str(p["orderId"]), []).append(p)
            self._cache["payments"] = final  # published whole: a reader sees all or nothing
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

    ``orders`` replaces the day's order count (the arrival rate scales with it);
    at most :data:`MAX_ORDERS` (a ValueError naming ``orders`` otherwise).
    ``trace`` keeps each order's timeline for :meth:`Result.trace` (about 5 kB
    an order); ``None`` keeps them for runs of up to
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
    if trace is None:
        trace = sc.traffic.orders <= TRACE_AUTO_MAX_ORDERS
    day = Day(sc, st, seed, trace=trace).run(progress)
    frame = order_frame(day)
    summary = summarize(frame, scenario=sc.name, strategy=st.name, seed=seed)
    return Result(sc, st, seed, frame, summary, day.provider.stats, day if trace else None)
