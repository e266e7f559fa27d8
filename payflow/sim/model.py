"""One simulated day: customers in front of a shop whose backend runs the core flows.

The pieces, all on one :class:`simpy.Environment` whose clock is seconds since
midnight of the simulated day:

* **arrivals** -- exactly ``traffic.day_orders`` first clicks (the day's real
  load; a run tracks a sample of them), drawn over the day
  from the diurnal curve by thinning;
* **customers** -- click submit and watch the page. When their patience runs
  out with nothing definite on screen they click again (unhappy customer 3),
  reload (the browser re-POSTs; a disabled button cannot stop that) or give
  up. What the page shows depends on the strategy;
* **the shop's backend** -- ``sync``: the request handler runs
  :func:`payflow.core._flows.pay` while the browser waits behind a gateway
  timeout (the handler carries on after the gateway gave up); ``async``:
  accepts at once (202 + status page) and a worker runs the same flow. An
  order lock, a paid-order check and a reconciler (running
  :func:`payflow.core._recheck.recheck` on abandoned journal records) are knobs;
* **crashes** -- at the scenario's times every handler, worker and reconciler
  is interrupted; the journal survives; after the restart the backend may
  recheck it (``recover_on_restart``);
* **the provider** -- :class:`~payflow.sim.provider.ProviderModel`.

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
from payflow.core import recheck
from payflow.core._api import MONEY_TAKEN_STATES
from payflow.core._calls import Context
from payflow.core._keys import derived_key
from payflow.core.errors import (
    ConflictError,
    OutcomeUnknown,
    PayflowError,
    PaymentFailed,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.core.events import Attempt, AttemptResult, Retry, repeat_kind
from payflow.core.messages import AskOperator, Call, Request, Response
from payflow.drivers._simpy import FlowIO, SimJournal, run_flow
from payflow.provider.faults import DAY_S
from payflow.provider.ledger import Ledger
from payflow.sim.provider import ProviderModel
from payflow.sim.scenarios import Scenario
from payflow.sim.strategies import Strategy

__all__ = ["DEFINITE", "Day", "Order"]

#: Page messages that tell the customer the outcome (DESIGN: time to feedback).
DEFINITE = frozenset({"success", "failed", "email"})

_RECHECK_BATCH = 16


class Order:
    """One order: what its customer did and saw, and what its flows counted.

    Doubles as the :class:`~payflow.drivers._simpy.Sink` of every flow run for it.
    ``trace`` holds core events and ``(time, kind, detail)`` tuples when
    tracing is on.
    """

    __slots__ = (
        "amount",
        "arrival",
        "calls",
        "clicks",
        "email_at",
        "email_gave_up_at",
        "email_patience",
        "email_promised_at",
        "feedback",
        "feedback_at",
        "flows",
        "fulfilled_at",
        "gave_up",
        "index",
        "inflight",
        "keys_sent",
        "last_page",
        "left_at",
        "locked",
        "order_id",
        "outcome",
        "outcome_at",
        "patience",
        "poll_retries",
        "rechecks",
        "resends",
        "retries",
        "settled",
        "submits",
        "support_contact",
        "support_draw",
        "timeouts",
        "told",
        "trace",
    )

    def __init__(
        self, index: int, arrival: float, amount: int, patience: float, trace: bool
    ) -> None:
        self.index = index
        self.order_id = f"order-{index:06d}"
        self.arrival = arrival
        self.amount = amount
        self.patience = patience
        self.clicks = 0
        self.submits = 0
        self.flows = 0
        self.rechecks = 0
        self.calls = 0
        self.timeouts = 0
        self.retries = 0
        self.poll_retries = 0
        self.resends = 0
        self.keys_sent: set[tuple[str, str]] | None = None
        self.feedback = ""
        self.feedback_at: float | None = None
        self.last_page = ""
        self.left_at: float | None = None
        self.gave_up = False
        self.fulfilled_at: float | None = None
        self.email_at: float | None = None
        self.email_promised_at: float | None = None
        #: How long this customer waits for a promised email before giving up on the
        #: shop, and the uniform draw that decides whether they then contact support
        #: (both drawn up front from their own stream: see ``Day``).
        self.email_patience = math.inf
        self.support_draw = 1.0
        self.email_gave_up_at: float | None = None
        self.support_contact = False
        #: When the customer first knew the final outcome (a "success"/"failed" page or
        #: the outcome email), and what their last such message said ("success"/"failed").
        self.outcome_at: float | None = None
        self.told = ""
        self.outcome = ""
        self.inflight: simpy.Event | None = None
        #: Locked with no answer from the provider (``Strategy.lock_until_answer``).
        self.locked = False
        self.settled: simpy.Event | None = None
        self.trace: list[Any] | None = [] if trace else None

    # -- Sink
    def on_call(self, call: Call, now: float) -> None:
        self.calls += 1

    def on_event(self, event: Any) -> None:
        cls = event.__class__
        if cls is AttemptResult:
            if event.outcome == "timeout":
                self.timeouts += 1
        elif cls is Retry:
            self.retries += 1
        elif cls is Attempt:
            self._count_attempt(event)
        if self.trace is not None:
            self.trace.append(event)

    def _count_attempt(self, event: Attempt) -> None:
        """Retries the core emits no ``Retry`` for: see :func:`payflow.core.events.repeat_kind`."""
        sent = self.keys_sent
        if sent is None:
            if event.idempotency_key is None and event.attempt <= 1:
                return  # the common first attempt of a keyless call: no set needed
            sent = self.keys_sent = set()
        kind = repeat_kind(event, sent)
        if kind == "poll":
            self.retries += 1
            self.poll_retries += 1
        elif kind == "resend":
            self.retries += 1
            self.resends += 1

    def note(self, at: float, kind: str, detail: str = "") -> None:
        """Add a UI/backend entry to the trace."""
        if self.trace is not None:
            self.trace.append((at, kind, detail))


class Day:
    """A scenario's day run under one strategy; call :meth:`run`, then read the parts.

    After the run: ``orders`` (list of :class:`Order`), ``ledger`` (the ground
    truth), ``provider`` (its queue statistics) and ``journal`` (what the shop
    still does not know).
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
        self.io = FlowIO(env, self.provider.submit, self.journal, self._operator)
        self.budget = strategy.new_budget()
        self.backend_rng = random.Random(f"{stream}:backend")
        self.customer_rng = random.Random(f"{stream}:customers")
        self.orders = _draw_orders(
            scenario,
            random.Random(f"{stream}:arrivals"),
            trace,
            first=replica * scenario.traffic.day_orders + 1,
        )
        _draw_email_patience(scenario, self.orders, random.Random(f"{stream}:email-patience"))
        self.by_id = {o.order_id: o for o in self.orders}
        self.up = True
        self.customers_active = 0
        self._recheck_due: dict[str, tuple[float, int]] = {}
        # A dict, not a set: crashes interrupt in a deterministic (insertion) order.
        self.workers: dict[simpy.Process, None] = {}
        self.last_arrival = self.orders[-1].arrival if self.orders else 0.0
        self.end = max(DAY_S, self.last_arrival) + scenario.backend.settle_s
        self._spinner = strategy.feedback == "spinner" or (
            strategy.delay_notice_s is not None and not strategy.email
        )

    # ------------------------------------------------------------ running
    def run(self, progress: Callable[[float, float], None] | None = None) -> Day:
        """Simulate the day and the settling window after it.

        ``progress(now, end)`` is called every simulated quarter hour.
        """
        env = self.env
        env.process(self._arrivals())
        for at in self.scenario.backend.crashes:
            env.process(self._crash(at))
        if self.strategy.reconcile:
            env.process(self._reconciler())
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

    def context(self) -> Context:
        strategy, env = self.strategy, self.env
        return Context(
            strategy.policy,
            self.backend_rng,
            self.budget,
            strategy.operator_every_s,
            clock=lambda: env.now,
        )

    def _operator(self, question: AskOperator) -> bool:
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
        order.note(self.env.now, "operator", "keeps waiting" if keep else "gives up")
        return keep

    def _on_commit(self, request: Request, response: Response, now: float) -> None:
        op = request.operation
        if op == "create" and response.status == 201:
            order = self.by_id.get(str(response.body.get("orderId")))
            if order is not None:
                order.note(now, "provider", f"payment {response.body.get('paymentId')} created")
        elif op == "refund" and response.status == 201:
            order = self.by_id.get(str(response.body.get("reference")))
            if order is not None:
                order.note(now, "provider", f"refund of {response.body.get('amount')} made")

    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        for order in self.orders:
            delay = order.arrival - env.now
            if delay > 0:
                yield env.timeout(delay)
            env.process(self._customer(order))

    # ------------------------------------------------------------ customers
    def _customer(self, order: Order) -> Generator[simpy.Event, Any, None]:
        self.customers_active += 1
        try:
            if self.strategy.mode == "async":
                yield from self._customer_status_page(order)
            else:
                yield from self._customer_sync(order)
        finally:
            self.customers_active -= 1

    def _show(self, order: Order, message: str) -> bool:
        """The page shows ``message``; True if it is a definite outcome."""
        now = self.env.now
        order.last_page = message
        order.note(now, "page", message)
        if message in DEFINITE:
            if message == "email" and order.email_promised_at is None:
                order.email_promised_at = now
                self._await_email(order)
            elif message != "email":
                order.told = message
                if order.outcome_at is None:
                    order.outcome_at = now
            if order.feedback_at is None:
                order.feedback_at = now
                order.feedback = message
            return True
        return False

    def _await_email(self, order: Order) -> None:
        """The customer was promised an email: after their own patience without one they
        give up on the shop (order elsewhere), and some of them contact support."""
        if not math.isfinite(order.email_patience):
            return

        def lapse(_: simpy.Event) -> None:
            if order.email_at is not None:
                return
            now = self.env.now
            order.email_gave_up_at = now
            order.gave_up = True
            order.note(now, "customer", "no email yet: gives up on the shop")
            if order.support_draw < self.scenario.customers.contact_support:
                order.support_contact = True
                order.note(now, "customer", "contacts support")

        self.env.timeout(order.email_patience).callbacks.append(lapse)

    def _leave(self, order: Order, gave_up: bool) -> None:
        now = self.env.now
        order.left_at = now
        order.gave_up = gave_up
        order.note(now, "customer", "gives up" if gave_up else "leaves")

    def _first_clicks(self, order: Order) -> simpy.Event:
        """The submit click, and the double click some customers make right after it."""
        env, strategy = self.env, self.strategy
        order.clicks += 1
        order.note(env.now, "customer", "clicks submit")
        page = self.submit(order)
        if self.customer_rng.random() < self.scenario.customers.double_click:
            order.clicks += 1
            if strategy.debounce:
                order.note(env.now, "customer", "double click ignored (button disabled)")
            else:
                order.note(env.now, "customer", "double click: submits again")
                page = self.submit(order)
        return page

    def _customer_sync(self, order: Order) -> Generator[simpy.Event, Any, None]:
        env, rng, c, strategy = self.env, self.customer_rng, self.scenario.customers, self.strategy
        patience = order.patience * (c.spinner_patience if self._spinner else 1.0)
        click_p = c.click_again * (c.spinner_click if self._spinner else 1.0)
        page = self._first_clicks(order)
        notice: simpy.Event | None = None
        if strategy.delay_notice_s is not None:
            notice = env.timeout(strategy.delay_notice_s)
        while True:
            timer = env.timeout(patience)
            waits = [page, timer] if notice is None else [page, timer, notice]
            yield env.any_of(waits)
            if page.triggered:
                if self._show(order, str(page.value)):
                    self._leave(order, gave_up=False)
                    return
                # A generic error page: nothing definite.
                if order.submits < c.max_submits and rng.random() < c.retry_after_error:
                    yield env.timeout(c.think_s)
                    order.clicks += 1
                    order.note(env.now, "customer", "submits again after the error page")
                    page = self.submit(order)
                    continue
                self._leave(order, gave_up=True)
                return
            if notice is not None and notice.triggered:
                notice = None
                if strategy.email and self._show(order, "email"):
                    self._leave(order, gave_up=False)
                    return
                order.note(env.now, "page", "this is taking longer than usual")
                continue
            # Patience ran out with nothing on the screen.
            u = rng.random()
            if u < click_p and order.submits < c.max_submits:
                order.clicks += 1
                if strategy.debounce:
                    order.note(env.now, "customer", "clicks again (button disabled)")
                else:
                    order.note(env.now, "customer", "nothing happens: clicks submit again")
                    page = self.submit(order)
                continue
            if u < click_p + c.reload and order.submits < c.max_submits:
                order.note(env.now, "customer", "reloads the page (re-POST)")
                page = self.submit(order)
                continue
            self._leave(order, gave_up=True)
            return

    def _customer_status_page(self, order: Order) -> Generator[simpy.Event, Any, None]:
        env, rng, c, strategy = self.env, self.customer_rng, self.scenario.customers, self.strategy
        patience = order.patience * c.spinner_patience  # the page says it is processing
        page = self._first_clicks(order)
        quick = self.scenario.backend.accept_s < patience
        while True:
            if quick:
                yield page  # the backend answers (202 or an error page) within accept_s
            else:
                yield page | env.timeout(patience)
                if not page.triggered:
                    self._leave(order, gave_up=True)
                    return
            if page.value == "accepted":
                break
            # The backend was down: an error page.
            self._show(order, str(page.value))
            if order.submits < c.max_submits and rng.random() < c.retry_after_error:
                yield env.timeout(c.think_s)
                order.clicks += 1
                page = self.submit(order)
                continue
            self._leave(order, gave_up=True)
            return
        if strategy.email and self._show(order, "email"):
            self._leave(order, gave_up=False)
            return
        self._show(order, "processing")
        settled = order.settled
        assert settled is not None
        while True:
            timer = env.timeout(patience)
            yield settled | timer
            if settled.triggered:
                if self._show(order, str(settled.value)):
                    self._leave(order, gave_up=False)
                else:
                    self._leave(order, gave_up=True)
                return
            if rng.random() < c.click_again + c.reload:
                order.note(env.now, "customer", "reloads the status page")
                continue
            self._leave(order, gave_up=True)
            return

    # ------------------------------------------------------------ backend
    def submit(self, order: Order) -> simpy.Event:
        """A browser POST of the checkout form; the event fires with what the page shows."""
        env, strategy = self.env, self.strategy
        order.submits += 1
        page = simpy.Event(env)
        accept = self.scenario.backend.accept_s
        if not self.up:
            env.timeout(accept).callbacks.append(lambda _: _settle(page, "error"))
            return page
        if strategy.mode == "async":
            if order.settled is None:
                order.settled = simpy.Event(env)
            if not (strategy.dedupe_paid and order.fulfilled_at is not None) and not (
                strategy.order_lock and (order.inflight is not None or order.locked)
            ):
                self._start_payment(order)
            env.timeout(accept).callbacks.append(lambda _: _settle(page, "accepted"))
            return page
        if strategy.dedupe_paid and order.fulfilled_at is not None:
            order.note(env.now, "backend", "order already paid")
            env.timeout(accept).callbacks.append(lambda _: _settle(page, "success"))
            return page
        if strategy.order_lock and order.locked and order.inflight is None:
            order.note(env.now, "backend", "order locked: no answer from the provider yet")
            env.timeout(accept).callbacks.append(lambda _: _settle(page, "error"))
            return page
        if strategy.order_lock and order.inflight is not None:
            order.note(env.now, "backend", "order locked: waits for the payment in flight")
            done = order.inflight
        else:
            done = self._start_payment(order)
        done.callbacks.append(lambda ev: _settle(page, ev.value))
        if strategy.gateway_timeout_s is not None:
            env.timeout(strategy.gateway_timeout_s).callbacks.append(
                lambda _: _settle(page, "error")
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
        order.note(env.now, "backend", "pay flow starts")
        active = env.active_process
        message = "error"
        try:
            flow = flows.pay(
                order.order_id, order.amount, self.scenario.traffic.currency, self.context()
            )
            try:
                yield from run_flow(flow, self.io, order)
            except PaymentFailed:
                order.outcome = "failed"
                message = "failed"
            except (ProviderUnavailable, RequestRejected):
                order.outcome = "failed"
                message = "failed"
            except (OutcomeUnknown, ConflictError):
                order.outcome = "unknown"
                message = "email" if strategy.email else "error"
                order.locked = strategy.lock_until_answer
            else:
                order.outcome = "paid"
                message = "success"
                self._fulfil(order)
            order.note(env.now, "backend", f"pay flow ends: {order.outcome}")
        except simpy.Interrupt:
            order.note(env.now, "backend", "pay flow killed by a crash")
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
            self._email(order, message)
        if strategy.mode == "async" and order.settled is not None and message != "error":
            _settle(order.settled, message)

    def _fulfil(self, order: Order) -> None:
        if order.fulfilled_at is None:
            order.fulfilled_at = self.env.now
            order.note(self.env.now, "backend", "order shipped")

    def _email(self, order: Order, outcome: str) -> None:
        """Email the outcome (``"success"`` or ``"failed"``); one email per order."""
        if order.email_at is None:
            now = self.env.now
            order.email_at = now
            order.told = outcome
            if order.outcome_at is None:
                order.outcome_at = now
            order.note(now, "email", f"outcome emailed: {outcome}")

    # ------------------------------------------------------------ reconciliation
    def _reconciler(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        interval = self.strategy.recheck_interval_s
        while True:
            yield env.timeout(interval)
            if self.up:
                yield from self._recheck_abandoned()
            if (
                env.now >= self.last_arrival
                and not self.customers_active
                and not self.workers
                and not self.journal.any_abandoned()
            ):
                return

    def _recheck_abandoned(self, *, all_due: bool = False) -> Generator[simpy.Event, Any, None]:
        env = self.env
        due = self._recheck_due
        records = [
            r
            for r in self.journal.abandoned()
            if all_due or due.get(r.idempotency_key, (0.0, 0))[0] <= env.now
        ]
        for start in range(0, len(records), _RECHECK_BATCH):
            batch = [
                env.process(self._recheck(record))
                for record in records[start : start + _RECHECK_BATCH]
            ]
            self.workers.update(dict.fromkeys(batch))
            try:
                yield env.all_of(batch)
            except simpy.Interrupt:
                return  # a crash: the interrupted rechecks keep their records
            finally:
                for process in batch:
                    self.workers.pop(process, None)
            if not self.up:
                return

    def _recheck(self, record: Any) -> Generator[simpy.Event, Any, None]:
        env = self.env
        order = self.by_id.get(record.reference)
        if order is None:  # pragma: no cover - every record names an order
            return
        if record.idempotency_key not in self.journal.records:
            return  # settled meanwhile
        order.rechecks += 1
        journal = self.journal
        journal.claim(record.idempotency_key)
        try:
            result = yield from run_flow(recheck(record, self.context()), self.io, order)
        except simpy.Interrupt:
            order.note(env.now, "recheck", "killed by a crash")
            return
        except PayflowError:  # pragma: no cover - recheck reports instead of raising
            return
        finally:
            journal.release(record.idempotency_key)
        order.note(env.now, "recheck", f"{result.operation}: {result.action} ({result.state})")
        key = record.idempotency_key
        if result.action == "kept" and self.strategy.recheck_backoff:
            failures = self._recheck_due.get(key, (0.0, 0))[1] + 1
            wait = min(3600.0, self.strategy.recheck_interval_s * 2.0 ** (failures - 1))
            self._recheck_due[key] = (env.now + wait, failures)
        else:
            self._recheck_due.pop(key, None)
        if result.action != "kept" and result.operation == "pay":
            order.locked = False  # the provider has answered
        if result.action == "reported" and order.fulfilled_at is None and order.outcome != "failed":
            # Money taken that no flow claimed, for an order still open: it is this
            # order's payment (approved late) -- ship, email the customer, forget.
            self._fulfil(order)
            order.outcome = "paid"
            journal.records.pop(key, None)
            self._email(order, "success")
            if order.settled is not None:
                _settle(order.settled, "success")
        elif result.action == "reported":
            # Unclaimable: the order was already paid by another payment, or the
            # customer was told it failed. Refund it (the shipped refund flow).
            order.note(env.now, "recheck", "payment cannot be applied to the order: refund")
            journal.claim(key)
            try:
                done = yield from self._refund_reported(record, result, order)
            except simpy.Interrupt:
                order.note(env.now, "recheck", "killed by a crash")
                return
            finally:
                journal.release(key)
            if done:
                journal.records.pop(key, None)
        elif result.action != "kept" and result.operation == "pay" and order.fulfilled_at is None:
            order.outcome = "failed"
            if self.strategy.email:
                self._email(order, "failed")
            if order.settled is not None:
                _settle(order.settled, "failed")

    def _refund_reported(
        self, record: Any, result: Any, order: Order
    ) -> Generator[simpy.Event, Any, bool]:
        """Refund the money-taken payments of a reported record; True once each one is
        refunded or its refund is journalled (a later recheck repeats it)."""
        states = str(result.state).split(",")
        done = True
        for payment_id, state in zip(result.payment_ids, states, strict=False):
            if state not in MONEY_TAKEN_STATES:
                continue
            # The key a refunding recheck would have used, so a repeat is the same refund.
            key = derived_key("refund", record.idempotency_key, payment_id)
            flow = flows.refund(
                payment_id,
                record.amount,
                record.reference,
                self.context(),
                key=key,
                currency=record.currency,
            )
            try:
                yield from run_flow(flow, self.io, order)
            except (OutcomeUnknown, ConflictError):
                pass  # journalled for a recheck / refunded already
            except PayflowError:
                done = False  # nothing reached the provider: keep the record, try later
        return done

    # ------------------------------------------------------------ crashes
    def _crash(self, at: float) -> Generator[simpy.Event, Any, None]:
        env = self.env
        if at > env.now:
            yield env.timeout(at - env.now)
        self.up = False
        for process in list(self.workers):
            if process.is_alive:
                process.interrupt("crash")
        self.workers.clear()
        yield env.timeout(self.scenario.backend.restart_s)
        self.up = True
        if self.strategy.recover_on_restart:
            process = env.process(self._recheck_abandoned(all_due=True))
            self.workers[process] = None
            yield process
            self.workers.pop(process, None)


def _settle(event: simpy.Event, value: Any) -> None:
    if not event.triggered:
        event.succeed(value)


def _draw_email_patience(scenario: Scenario, orders: list[Order], rng: random.Random) -> None:
    """Each customer's patience for a promised email, and their support-contact draw.

    Two draws per order from a stream of their own, whatever the strategy, so
    the same people wait under every strategy and the other streams are untouched.
    """
    c = scenario.customers
    mu = math.log(c.email_patience_median_s)
    low, high = c.email_patience_range_s
    for order in orders:
        order.email_patience = min(high, max(low, rng.lognormvariate(mu, c.email_patience_sigma)))
        order.support_draw = rng.random()


def _draw_orders(
    scenario: Scenario, rng: random.Random, trace: bool, first: int = 1
) -> list[Order]:
    """Arrival times by thinning the diurnal curve, plus amount and patience per order.

    Exactly ``traffic.day_orders`` arrivals (the day's real load): candidates
    uniform over the day are kept with probability ``weight(t) / max weight``
    (the arrival times of a Poisson process given its count). Orders are
    numbered from ``first``.
    """
    traffic, customers = scenario.traffic, scenario.customers
    peak = max(w for _, w in traffic.diurnal)
    weight = traffic.rate_weight
    times: list[float] = []
    random_ = rng.random
    count = traffic.day_orders
    while len(times) < count:
        t = random_() * DAY_S
        if random_() * peak < weight(t):
            times.append(t)
    times.sort()
    low, high = traffic.amount
    p_low, p_high = customers.patience_range_s
    mu = math.log(customers.patience_median_s)
    orders = []
    for i, t in enumerate(times):
        amount = rng.randint(low, high)
        patience = min(p_high, max(p_low, rng.lognormvariate(mu, customers.patience_sigma)))
        orders.append(Order(first + i, t, amount, patience, trace))
    return orders
