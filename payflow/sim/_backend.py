"""The shop's backend: takes the checkout POST, runs the shipped pay flow, ships, emails.

Rule: the backend decides what the page says only from what the core's
:func:`payflow.core._flows.pay` returned or raised. ``sync``: the request handler runs
the flow while the browser waits behind a gateway timeout (the handler carries on
after the gateway gave up); ``async``: it accepts at once (202 + status page) and a
worker runs the same flow. An order lock and a paid-order check are the strategy's
knobs. Every handler and worker is listed in :attr:`Backend.workers`, for a crash to
kill (:mod:`payflow.sim._backend_crashes`).

The flows are called through the module (``flows.pay``), so the objects the
simulation drives are the ones the httpx client drives.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Generator
from typing import Any

import simpy

from payflow.core import _flows as flows
from payflow.core._budget import RetryBudget
from payflow.core._calls import Context
from payflow.core.errors import (
    ConflictError,
    OutcomeUnknown,
    PaymentFailed,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.core.messages import AskOperator, Request
from payflow.drivers._simpy import FlowIO, SimJournal, run_flow
from payflow.sim._order import Order, note
from payflow.sim._scenarios import Scenario
from payflow.sim._strategies import Strategy

__all__ = ["Backend", "succeed_once"]


class Backend:
    """The shop's request handlers and payment workers, on one SimPy environment.

    ``io`` is what their flows act on (the provider, the journal, the operator);
    ``up`` is False while the backend is down after a crash; ``workers`` holds
    every live handler, worker and recheck process (a dict, not a set: crashes
    interrupt in a deterministic, insertion order).
    """

    def __init__(
        self,
        env: simpy.Environment,
        scenario: Scenario,
        strategy: Strategy,
        seed: int,
        submit: Callable[[Request, simpy.Event], float | None],
        journal: SimJournal,
        by_id: dict[str, Order],
        budget: RetryBudget | None,
        rng: random.Random,
    ) -> None:
        self.env = env
        self.scenario = scenario
        self.strategy = strategy
        self.seed = seed
        self.by_id = by_id
        self.budget = budget
        self.rng = rng
        self.io = FlowIO(env, submit, journal, self.operator)
        self.up = True
        self.workers: dict[simpy.Process, None] = {}

    def context(self) -> Context:
        """The flows' context: the strategy's policy, the backend's stream, the retry budget."""
        strategy, env = self.strategy, self.env
        return Context(
            strategy.policy,
            self.rng,
            self.budget,
            strategy.operator_every_s,
            clock=lambda: env.now,
        )

    def operator(self, question: AskOperator) -> bool:
        """The operator at the till: keeps waiting until the order's patience is spent.

        Each order's operator patience is drawn once, from its own generator
        seeded by the run's seed and the order (so the draw does not depend on
        the order in which questions come), lognormal around the strategy's
        ``operator_patience_s``.
        """
        order = self.by_id.get(question.reference)
        if order is None:
            return True
        strategy = self.strategy
        rng = random.Random(f"{self.seed}:operator:{order.index}")
        patience = rng.lognormvariate(
            math.log(strategy.operator_patience_s), strategy.operator_patience_sigma
        )
        keep = question.waited_s < patience
        note(order, self.env.now, "operator", "keeps waiting" if keep else "gives up")
        return keep

    def submit(self, order: Order) -> simpy.Event:
        """A browser POST of the checkout form; the event fires with what the page shows."""
        env, strategy = self.env, self.strategy
        order.submits += 1
        page = simpy.Event(env)
        accept = self.scenario.backend.accept_s
        if not self.up:
            env.timeout(accept).callbacks.append(lambda _: succeed_once(page, "error"))
            return page
        if strategy.mode == "async":
            if order.settled is None:
                order.settled = simpy.Event(env)
            if not (strategy.dedupe_paid and order.fulfilled_at is not None) and not (
                strategy.order_lock and (order.inflight is not None or order.locked)
            ):
                self._start_payment(order)
            env.timeout(accept).callbacks.append(lambda _: succeed_once(page, "accepted"))
            return page
        if strategy.dedupe_paid and order.fulfilled_at is not None:
            note(order, env.now, "backend", "order already paid")
            env.timeout(accept).callbacks.append(lambda _: succeed_once(page, "success"))
            return page
        if strategy.order_lock and order.locked and order.inflight is None:
            note(order, env.now, "backend", "order locked: no answer from the provider yet")
            env.timeout(accept).callbacks.append(lambda _: succeed_once(page, "error"))
            return page
        if strategy.order_lock and order.inflight is not None:
            note(order, env.now, "backend", "order locked: waits for the payment in flight")
            done = order.inflight
        else:
            done = self._start_payment(order)
        done.callbacks.append(lambda ev: succeed_once(page, ev.value))
        if strategy.gateway_timeout_s is not None:
            env.timeout(strategy.gateway_timeout_s).callbacks.append(
                lambda _: succeed_once(page, "error")
            )
        return page

    def _start_payment(self, order: Order) -> simpy.Event:
        done = simpy.Event(self.env)
        order.inflight = done
        process = self.env.process(self._pay(order, done))
        self.workers[process] = None
        return done

    def _pay(self, order: Order, done: simpy.Event) -> Generator[simpy.Event, Any, None]:
        env, strategy = self.env, self.strategy
        order.flows += 1
        note(order, env.now, "backend", "pay flow starts")
        active = env.active_process
        message = "error"
        try:
            flow = flows.pay(
                order.order_id, order.amount, self.scenario.traffic.currency, self.context()
            )
            try:
                yield from run_flow(flow, self.io, order.counts)
            except PaymentFailed:
                order.outcome = "failed"
                message = "failed"
            except (ProviderUnavailable, RequestRejected):
                order.outcome = "failed"
                message = "failed"
            except (OutcomeUnknown, ConflictError):
                # A ConflictError says *this* request holds no money, not that the order
                # failed: the order has another payment (in flight here, or made by an
                # earlier submit under another key) whose fate decides it. So the shop
                # does not say "failed"; it waits for that payment, as for an unknown one.
                order.outcome = "unknown"
                message = "email" if strategy.email else "error"
                order.locked = strategy.lock_until_answer
            else:
                order.outcome = "paid"
                message = "success"
                self.fulfil(order)
            note(order, env.now, "backend", f"pay flow ends: {order.outcome}")
        except simpy.Interrupt:
            note(order, env.now, "backend", "pay flow killed by a crash")
            message = "error"
            order.locked = strategy.lock_until_answer
        finally:
            if active is not None:
                self.workers.pop(active, None)
            if order.inflight is done:
                order.inflight = None
            done.succeed(message)
        if (
            message in ("success", "failed")
            and strategy.email
            and (strategy.mode == "async" or order.email_promised_at is not None)
        ):
            # The status page (or a "we will email you" page) promised the outcome.
            self.email(order, message)
        if strategy.mode == "async" and order.settled is not None and message != "error":
            succeed_once(order.settled, message)

    def fulfil(self, order: Order) -> None:
        """Ship the order (once)."""
        if order.fulfilled_at is None:
            order.fulfilled_at = self.env.now
            note(order, self.env.now, "backend", "order shipped")

    def email(self, order: Order, outcome: str) -> None:
        """Email the outcome (``"success"`` or ``"failed"``); one email per order."""
        if order.email_at is None:
            now = self.env.now
            order.email_at = now
            order.told = outcome
            if order.outcome_at is None:
                order.outcome_at = now
            note(order, now, "email", f"outcome emailed: {outcome}")


def succeed_once(event: simpy.Event, value: Any) -> None:
    """Fire ``event`` with ``value`` unless something fired it first (the first answer wins)."""
    if not event.triggered:
        event.succeed(value)
