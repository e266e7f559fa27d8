"""The shop's reconciliation: rechecks journal records their flows abandoned, settles orders.

Rule: only records no live flow owns are touched, and only through the shipped
:func:`payflow.core._recheck.recheck` and :func:`payflow.core._flows.refund`. A recheck
that finds money an open order never got ships that order and emails its customer; money
that cannot be applied (the order was paid otherwise, or told it failed) is refunded.
With ``recheck_backoff`` a record left unknown waits twice as long before each retry.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from payflow.core import _flows as flows
from payflow.core import recheck
from payflow.core.errors import ConflictError, OutcomeUnknown, PayflowError
from payflow.core.states import MONEY_TAKEN_STATES
from payflow.drivers._simpy import run_flow
from payflow.sim._backend import Backend, succeed_once
from payflow.sim._order import Order, note
from payflow.sim._strategies import Strategy

__all__ = ["Reconciler"]

#: Rechecks run this many at a time (a crash interrupts the whole batch).
_RECHECK_BATCH = 16


class Reconciler:
    """Rechecks the backend's abandoned journal records; :meth:`run` is its periodic loop.

    ``day_done()`` tells the loop when the day has nothing left to reconcile for
    (no more arrivals, no customer on a page); it then stops once the journal
    holds no abandoned record and no worker runs.
    """

    def __init__(
        self,
        env: simpy.Environment,
        strategy: Strategy,
        backend: Backend,
        by_id: dict[str, Order],
        day_done: Callable[[], bool],
    ) -> None:
        self.env = env
        self.strategy = strategy
        self.backend = backend
        self.by_id = by_id
        self.day_done = day_done
        self.journal = backend.io.journal
        #: Per record key, with ``recheck_backoff``: when it is due again, and how many
        #: rechecks in a row left it unknown.
        self._due: dict[str, tuple[float, int]] = {}

    def run(self) -> Generator[simpy.Event, Any, None]:
        env = self.env
        interval = self.strategy.recheck_interval_s
        while True:
            yield env.timeout(interval)
            if self.backend.up:
                yield from self.recheck_abandoned()
            if self.day_done() and not self.backend.workers and not self.journal.any_abandoned():
                return

    def recheck_abandoned(self, *, all_due: bool = False) -> Generator[simpy.Event, Any, None]:
        """Recheck every abandoned record that is due (all of them with ``all_due``)."""
        env, workers = self.env, self.backend.workers
        due = self._due
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
            workers.update(dict.fromkeys(batch))
            try:
                yield env.all_of(batch)
            except simpy.Interrupt:
                return  # a crash: the interrupted rechecks keep their records
            finally:
                for process in batch:
                    workers.pop(process, None)
            if not self.backend.up:
                return

    def _recheck(self, record: Any) -> Generator[simpy.Event, Any, None]:
        env, backend, journal = self.env, self.backend, self.journal
        order = self.by_id.get(record.reference)
        if order is None:  # pragma: no cover - every record names an order
            return
        if record.idempotency_key not in journal.records:
            return  # settled meanwhile
        order.rechecks += 1
        journal.claim(record.idempotency_key)
        try:
            flow = recheck(record, backend.context())
            result = yield from run_flow(flow, backend.io, order.counts)
        except simpy.Interrupt:
            note(order, env.now, "recheck", "killed by a crash")
            return
        except PayflowError:  # pragma: no cover - recheck reports instead of raising
            return
        finally:
            journal.release(record.idempotency_key)
        note(order, env.now, "recheck", f"{result.operation}: {result.action} ({result.state})")
        key = record.idempotency_key
        if result.action == "kept" and self.strategy.recheck_backoff:
            failures = self._due.get(key, (0.0, 0))[1] + 1
            wait = min(3600.0, self.strategy.recheck_interval_s * 2.0 ** (failures - 1))
            self._due[key] = (env.now + wait, failures)
        else:
            self._due.pop(key, None)
        if result.action != "kept" and result.operation == "pay":
            order.locked = False  # the provider has answered
        if result.action == "reported" and order.fulfilled_at is None and order.outcome != "failed":
            # Money taken that no flow claimed, for an order still open: it is this
            # order's payment (approved late) -- ship, email the customer, forget.
            backend.fulfil(order)
            order.outcome = "paid"
            journal.records.pop(key, None)
            backend.email(order, "success")
            if order.settled is not None:
                succeed_once(order.settled, "success")
        elif result.action == "reported":
            # Unclaimable: the order was already paid by another payment, or the
            # customer was told it failed. Refund it (the shipped refund flow).
            note(order, env.now, "recheck", "payment cannot be applied to the order: refund")
            journal.claim(key)
            try:
                done = yield from self._refund_reported(record, result, order)
            except simpy.Interrupt:
                note(order, env.now, "recheck", "killed by a crash")
                return
            finally:
                journal.release(key)
            if done:
                journal.records.pop(key, None)
        elif result.action != "kept" and result.operation == "pay" and order.fulfilled_at is None:
            order.outcome = "failed"
            if self.strategy.email:
                backend.email(order, "failed")
            if order.settled is not None:
                succeed_once(order.settled, "failed")

    def _refund_reported(
        self, record: Any, result: Any, order: Order
    ) -> Generator[simpy.Event, Any, bool]:
        """Refund the money-taken payments of a reported record; True once each one is
        refunded or its refund is journalled (a later recheck repeats it)."""
        backend = self.backend
        states = str(result.state).split(",")
        done = True
        for payment_id, state in zip(result.payment_ids, states, strict=False):
            if state not in MONEY_TAKEN_STATES:
                continue
            # The shop refunds as it would through PaymentClient.refund: the flow's own
            # key (flows.refund_key of the payment and the order), so asking again for
            # the same payment is the same refund.
            flow = flows.refund(
                payment_id,
                record.amount,
                record.reference,
                backend.context(),
                currency=record.currency,
            )
            try:
                yield from run_flow(flow, backend.io, order.counts)
            except (OutcomeUnknown, ConflictError):
                pass  # journalled for a recheck / refunded already
            except PayflowError:
                done = False  # nothing reached the provider: keep the record, try later
        return done
