"""Settling what the journal still holds: the recheck and crash-recovery flow.

Laybuy's rules, for each pending record found at start-up or on a later recheck:

* a pending **refund** is retried with the same reference and key;
* a **payment** still waiting for the payer is cancelled (or polled to its
  end, if the policy says ``recover_pending="poll"``);
* a payment that took money the caller never saw is refunded automatically,
  or reported for the caller to apply (``refund_unclaimed``) -- captured first
  if it is this operation's own payment, only reserved, and the policy
  captures (``Policy.capture``); until the capture is confirmed the record is
  kept, so a reported payment is money the shop will get (a reservation found
  by an order lookup is reported as it is);
* a cancelled, declined or expired payment is simply forgotten.

A payment record without a payment id (the create was never answered) is
resolved by sending the create again *with the same idempotency key*: the
provider replays the original answer, or -- if the create never arrived --
creates the payment, which is then cancelled. Without a key, the order is
looked up by its reference instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from payflow.core import api
from payflow.core.calls import Context, Flow, PollingTimedOut, call, poll_until_settled
from payflow.core.errors import ConflictError, OutcomeUnknown, PayflowError
from payflow.core.flows import _capture, _lookup, cancel, refund, status
from payflow.core.keys import derived_key
from payflow.core.messages import Forget, PendingRecord, Save

__all__ = ["RecheckResult", "recheck"]


@dataclass(frozen=True, slots=True)
class RecheckResult:
    """What a recheck did with one journal record.

    ``action`` is "forgotten" (nothing was taken), "cancelled", "refunded",
    "reported" (money taken; kept for the caller to apply) or "kept" (still
    unknown; try again later). ``payment_ids`` lists the payments it touched.
    """

    reference: str
    operation: str
    action: str
    state: str
    payment_ids: tuple[str, ...] = ()
    refunded_amount: int = 0


def recheck(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    """Settle one journal record; never raises for an unreachable provider
    (the record is kept and the result says "kept")."""
    try:
        if record.operation == "refund":
            return (yield from _recheck_refund(record, ctx))
        return (yield from _recheck_payment(record, ctx))
    except (OutcomeUnknown, PayflowError) as exc:
        if isinstance(exc, ConflictError) and record.operation == "refund":
            # Refused for good (e.g. already refunded in full): nothing to retry.
            yield Forget(record.idempotency_key)
            return RecheckResult(record.reference, record.operation, "forgotten", "conflict")
        yield Save(replace(record, state="recheck"))
        ids = (record.payment_id,) if record.payment_id else ()
        return RecheckResult(record.reference, record.operation, "kept", "unknown", ids)


def _recheck_refund(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    body = yield from refund(
        record.payment_id or "",
        record.amount,
        record.reference,
        ctx,
        key=record.idempotency_key,
        currency=record.currency,
    )
    state = str(body.get("state", "completed"))
    ids = (record.payment_id,) if record.payment_id else ()
    return RecheckResult(record.reference, "refund", "refunded", state, ids, record.amount)


def _payments_of(record: PendingRecord, ctx: Context) -> Flow[list[Mapping[str, Any]]]:
    if record.payment_id:
        body = yield from status(record.payment_id, ctx, record.reference)
        return [body]
    key = record.idempotency_key
    if record.key_sent:
        request = api.create_payment(record.reference, record.amount, record.currency, key)
        resp = yield from call(request, ctx, record.reference)
        if resp.ok:
            return [resp.body]
        if resp.status == 409 and resp.body.get("code") == "request_in_progress":
            # The first create is still being processed: settle it on a later recheck
            # (a lookup by order could touch another operation's payment).
            raise OutcomeUnknown("the create is still in progress", reference=record.reference)
        if resp.status in (400, 409, 422):
            return []  # refused for what it is (and replayed as refused): nothing was created
        # 401/403/404 and the like say nothing about the payment: keep the record.
        raise OutcomeUnknown(
            f"recheck could not replay the create (HTTP {resp.status})",
            reference=record.reference,
            status=resp.status,
        )
    return (yield from _lookup(record.reference, ctx))


def _recheck_payment(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    payments = yield from _payments_of(record, ctx)
    touched: list[str] = []
    refunded = 0
    actions: list[str] = []
    states: list[str] = []
    for body in payments:
        payment_id = str(body.get("paymentId", ""))
        touched.append(payment_id)
        state = api.payment_state(body)
        cancelled_here = False
        if state == "initiated":
            cancelled_here = True
            if ctx.policy.recover_pending == "poll":
                try:
                    body = yield from poll_until_settled(payment_id, ctx, record.reference, None)
                except PollingTimedOut:
                    body = yield from cancel(payment_id, ctx, record.reference)
            else:
                body = yield from cancel(payment_id, ctx, record.reference)
            state = api.payment_state(body)
            if state == "initiated":
                raise OutcomeUnknown("payment still pending after cancel", payment_id=payment_id)
        if (
            state == "reserved"
            and ctx.policy.capture
            and not ctx.policy.refund_unclaimed
            and (record.payment_id or record.key_sent)  # this operation's own payment
        ):
            # The caller will apply it as paid: take the money, as ``pay`` would have
            # (a reservation left alone is never paid out to the shop).
            amount = int(body.get("amount", record.amount))
            body = yield from _capture(payment_id, amount, record.reference, ctx)
            state = api.payment_state(body)
            if state == "reserved":
                # Refused or unanswered: report it only once the money is taken.
                raise OutcomeUnknown("capture of a late approval not confirmed yet",
                                     reference=record.reference, payment_id=payment_id)  # fmt: skip
        if state in api.MONEY_TAKEN_STATES:
            if not ctx.policy.refund_unclaimed:
                actions.append("reported")
                states.append(state)
                continue
            amount = int(body.get("amount", record.amount)) - int(body.get("refundedAmount", 0))
            if amount > 0:
                # A key derived from the record: a recheck repeated after a crash reuses it.
                key = derived_key("refund", record.idempotency_key, payment_id)
                yield from refund(
                    payment_id, amount, record.reference, ctx, key=key, currency=record.currency
                )
                refunded += amount
            actions.append("refunded")
            states.append(state)
        else:
            actions.append("cancelled" if cancelled_here and state == "cancelled" else "forgotten")
            states.append(state)
    if "reported" in actions:
        yield Save(replace(record, state="reported"))
        action = "reported"
    else:
        yield Forget(record.idempotency_key)
        action = next((a for a in ("refunded", "cancelled") if a in actions), "forgotten")
    state = states[0] if len(states) == 1 else ",".join(states) or "none"
    return RecheckResult(record.reference, "pay", action, state, tuple(touched), refunded)
