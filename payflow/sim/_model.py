"""One simulated day: customers in front of a shop whose backend runs the core flows.

Rule: :class:`Day` only wires the parts and runs the clock; each part keeps its own
rule in its own module. All of them share one :class:`simpy.Environment` whose clock
is seconds since midnight of the simulated day:

* **customers** (:mod:`payflow.sim._customers`) -- exactly ``traffic.day_orders``
  first clicks (the day's real load; a run tracks a sample of them), drawn over the
  day from the diurnal curve by thinning; each customer clicks submit, watches the
  page, clicks again, reloads or gives up;
* **the shop's backend** (:mod:`payflow.sim._backend`) -- takes the POST and runs
  :func:`payflow.core._flows.pay` (``sync`` behind a gateway timeout, or ``async``
  behind a status page), ships and emails;
* **reconciliation** (:mod:`payflow.sim._reconciler`) -- runs
  :func:`payflow.core._recheck.recheck` on abandoned journal records, and refunds
  money that cannot be applied;
* **crashes** (:mod:`payflow.sim._backend_crashes`) -- at the scenario's times every
  handler, worker and recheck is interrupted; the journal survives;
* **the provider** -- :class:`~payflow.sim._provider.ProviderModel`.

Each part draws from a stream of its own, named after the seed, so a change in one
part's draws leaves the others' untouched.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import simpy

from payflow.core.messages import Request, Response
from payflow.drivers._simpy import SimJournal
from payflow.provider.faults import DAY_S
from payflow.provider.ledger import Ledger
from payflow.sim._backend import Backend
from payflow.sim._backend_crashes import crash_and_restart
from payflow.sim._customers import Customers, draw_email_patience, draw_orders
from payflow.sim._order import Order, note
from payflow.sim._provider import ProviderModel
from payflow.sim._reconciler import Reconciler
from payflow.sim._scenarios import Scenario
from payflow.sim._strategies import Strategy

__all__ = ["Day", "Order"]


class Day:
    """A scenario's day run under one strategy; call :meth:`run`, then read the parts.

    After the run: ``orders`` (list of :class:`Order`, ``by_id`` by order id),
    ``ledger`` (the ground truth), ``provider`` (its queue statistics) and
    ``journal`` (what the shop still does not know). ``customers``, ``backend``
    and ``reconciler`` are the day's parts.
    """

    def __init__(
        self,
        scenario: Scenario,
        strategy: Strategy,
        seed: int = 0,
        *,
        trace: bool = True,
        replica: int = 0,
    ) -> None:
        self.scenario = scenario
        self.strategy = strategy
        self.seed = seed
        self.replica = replica
        # Replica 0 is the seed's day; replica k > 0 another, independent day like it.
        stream = f"{seed}" if replica == 0 else f"{seed}/{replica}"
        self.env = env = simpy.Environment()
        self.ledger = Ledger(
            random.Random(f"{stream}:ledger"),
            scenario.payer,
            require_idempotency_key=strategy.provider_requires_key,
            reservation_expiry_s=scenario.reservation_expiry_s,
        )
        self.provider = ProviderModel(
            env,
            self.ledger,
            scenario.profile(),
            random.Random(f"{stream}:faults"),
            read_latency=scenario.read_latency,
            queue_limit=scenario.queue_limit,
            on_commit=self._on_commit if trace else None,
        )
        self.journal = SimJournal()
        budget = strategy.new_budget()
        backend_rng = random.Random(f"{stream}:backend")
        customer_rng = random.Random(f"{stream}:customers")
        self.orders = draw_orders(
            scenario,
            random.Random(f"{stream}:arrivals"),
            trace,
            first=replica * scenario.traffic.day_orders + 1,
        )
        draw_email_patience(scenario, self.orders, random.Random(f"{stream}:email-patience"))
        self.by_id = {o.order_id: o for o in self.orders}
        self.backend = Backend(
            env,
            scenario,
            strategy,
            seed,
            self.provider.submit,
            self.journal,
            self.by_id,
            budget,
            backend_rng,
        )
        self.customers = Customers(
            env, scenario, strategy, self.orders, customer_rng, self.backend.submit
        )
        self.reconciler = Reconciler(
            env, strategy, self.backend, self.by_id, self._arrived_and_left
        )
        self.end = max(DAY_S, self.customers.last_arrival) + scenario.backend.settle_s

    def run(self, progress: Callable[[float, float], None] | None = None) -> Day:
        """Simulate the day and the settling window after it.

        ``progress(now, end)`` is called every simulated quarter hour.
        """
        env = self.env
        env.process(self.customers.arrivals())
        recover: Callable[[], Generator[simpy.Event, Any, None]] | None = None
        if self.strategy.recover_on_restart:
            recover = partial(self.reconciler.recheck_abandoned, all_due=True)
        for at in self.scenario.backend.crashes:
            env.process(
                crash_and_restart(env, at, self.backend, self.scenario.backend.restart_s, recover)
            )
        if self.strategy.reconcile:
            env.process(self.reconciler.run())
        if progress is None:
            env.run(until=self.end)
        else:
            step = 900.0
            t = 0.0
            while t < self.end:
                t = min(self.end, t + step)
                env.run(until=t)
                progress(t, self.end)
        return self

    def _arrived_and_left(self) -> bool:
        """Every customer has arrived and left the page (the reconciler may stop)."""
        return self.env.now >= self.customers.last_arrival and not self.customers.active

    def _on_commit(self, request: Request, response: Response, now: float) -> None:
        """Trace what the provider applied to an order (tracing only)."""
        op = request.operation
        if op == "create" and response.status == 201:
            order = self.by_id.get(str(response.body.get("orderId")))
            if order is not None:
                note(order, now, "provider", f"payment {response.body.get('paymentId')} created")
        elif op == "refund" and response.status == 201:
            order = self.by_id.get(str(response.body.get("reference")))
            if order is not None:
                note(order, now, "provider", f"refund of {response.body.get('amount')} made")
