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

Every reply is read strictly (:mod:`payflow.core._replies`). A record leaves the
journal only on replies that prove no money is held or that account for it;
anything else -- an unreadable reply, a mismatch, a 409 its own records do not
explain, a payment still pending after an unconfirmed cancel -- keeps it
("kept"). A recheck never raises because of what the provider answered.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from payflow.core import _api as api
from payflow.core._calls import Context, Flow, PollingTimedOut, call, poll_until_settled
from payflow.core._flows import (
    cancel,
    capture,
    explain_conflict,
    find_payments,
    refund,
    request_in_progress,
    status,
)
from payflow.core._keys import derived_key
from payflow.core._replies import Expected, PaymentStatus, read_payment
from payflow.core.errors import (
    ConflictError,
    OutcomeUnknown,
    PayflowError,
    ProviderMismatch,
    ReplyNotUnderstood,
    RequestRejected,
)
from payflow.core.messages import Forget, PendingRecord, Save
from payflow.core.states import MONEY_HELD, NOTHING_TAKEN
from payflow.core.states import PaymentState as S

__all__ = ["RecheckResult", "recheck", "unclaimed_refund_key"]


def unclaimed_refund_key(record: PendingRecord, payment_id: str) -> str:
    """The key of the refund a recheck sends for money nobody claimed: derived from
    the journal record, so a recheck repeated after a crash reuses it. (A refund
    the shop asks for itself -- ``PaymentClient.refund``, the simulated shop's
    refund of a reported payment -- is a different operation: ``refund_key``.)"""
    return derived_key("refund", record.idempotency_key, payment_id)


@dataclass(frozen=True, slots=True)
class RecheckResult:
    """What a recheck did with one journal record.

    ``action`` is "forgotten" (nothing was taken), "cancelled", "refunded",
    "reported" (money taken; kept for the caller to apply) or "kept" (still
    unknown; try again later -- ``state`` then says why: "unknown", or
    "mismatch" for a reply about something else, which needs a person).
    ``payment_ids`` lists the payments it touched.
    """

    reference: str
    operation: str
    action: str
    state: str
    payment_ids: tuple[str, ...] = ()
    refunded_amount: int = 0


def recheck(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    """Settle one journal record; never raises for what the provider answered
    (the record is kept and the result says "kept")."""
    try:
        if record.operation == "refund":
            return (yield from _recheck_refund(record, ctx))
        return (yield from _recheck_payment(record, ctx))
    except PayflowError as exc:
        if isinstance(exc, ConflictError) and record.operation == "refund":
            # Refused, and the payment's own state explains it: nothing to retry.
            yield Forget(record.idempotency_key)
            return RecheckResult(record.reference, record.operation, "forgotten", "conflict")
        yield Save(replace(record, state="recheck"))
        ids = (record.payment_id,) if record.payment_id else ()
        why = "mismatch" if isinstance(exc, ProviderMismatch) else "unknown"
        return RecheckResult(record.reference, record.operation, "kept", why, ids)


def _recheck_refund(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    done = yield from refund(
        record.payment_id or "",
        record.amount,
        record.reference,
        ctx,
        key=record.idempotency_key,
        currency=record.currency,
    )
    ids = (record.payment_id,) if record.payment_id else ()
    return RecheckResult(record.reference, "refund", "refunded", done.state, ids, record.amount)


def _payments_of(record: PendingRecord, ctx: Context) -> Flow[list[PaymentStatus]]:
    """The payments this record stands for, each checked against it."""
    expect = Expected(record.reference, record.amount, record.currency)
    if record.payment_id:
        try:
            view = yield from status(record.payment_id, ctx, record.reference, expect)
        except RequestRejected as exc:
            if exc.status != 404:
                raise
            # The provider knows no such payment: the reply that named it was wrong
            # (a bug, a proxy). The create's key still names this operation's payment.
            found = yield from _payments_of(replace(record, payment_id=None), ctx)
            if any(p.payment_id == record.payment_id for p in found):
                raise OutcomeUnknown(
                    "the provider both knows and does not know the payment",
                    reference=record.reference, payment_id=record.payment_id,
                ) from exc  # fmt: skip
            return found
        return [view]
    if not record.key_sent:
        payments = yield from find_payments(record.reference, ctx)
        return payments
    request = api.create_payment(
        record.reference, record.amount, record.currency, record.idempotency_key
    )
    resp, _ = yield from call(request, ctx, record.reference)
    refs: dict[str, Any] = {
        "reference": record.reference,
        "idempotency_key": record.idempotency_key,
    }
    if resp.ok:
        return [read_payment(resp.body, expect=expect, what="create")]
    if request_in_progress(resp):
        # The first create is still being processed: settle it on a later recheck
        # (a lookup by order could touch another operation's payment).
        raise OutcomeUnknown("the create is still in progress", **refs)
    if resp.status in (409, 422):
        # Only the order's own payments can say that nothing was created.
        try:
            yield from explain_conflict(record.reference, ctx, resp, **refs)
        except ConflictError:
            return []
    if resp.status == 400:
        return []  # the create itself is invalid (and replayed as such): nothing was created
    # 401/403/404 and the like say nothing about the payment: keep the record.
    raise OutcomeUnknown(
        f"recheck could not replay the create (HTTP {resp.status})",
        status=resp.status,
        **refs,
    )


def _recheck_payment(record: PendingRecord, ctx: Context) -> Flow[RecheckResult]:
    payments = yield from _payments_of(record, ctx)
    own = bool(record.payment_id or record.key_sent)  # this operation's own payment
    touched: list[str] = []
    refunded = 0
    actions: list[str] = []
    states: list[str] = []
    for view in payments:
        payment_id = view.payment_id
        touched.append(payment_id)
        expect = Expected(record.reference, view.amount, view.currency)
        cancelled_here = False
        if view.stage is S.PENDING:
            cancelled_here = True
            if ctx.policy.recover_pending == "poll":
                try:
                    view = yield from poll_until_settled(
                        payment_id, ctx, record.reference, None, expect=expect
                    )
                except PollingTimedOut:
                    view = yield from cancel(payment_id, ctx, record.reference, expect)
            else:
                view = yield from cancel(payment_id, ctx, record.reference, expect)
            if view.stage is S.PENDING:
                raise OutcomeUnknown("payment still pending after cancel", payment_id=payment_id)
        if (
            view.stage in MONEY_HELD
            and ctx.policy.capture
            and not ctx.policy.refund_unclaimed
            and own
        ):
            # The caller will apply it as paid: take the money, as ``pay`` would have
            # (a reservation left alone is never paid out to the shop).
            view = yield from capture(payment_id, view.amount, ctx, record.reference, expect)
            if view.stage in MONEY_HELD:
                # Refused or unanswered: report it only once the money is taken.
                raise OutcomeUnknown("capture of a late approval not confirmed yet",
                                     reference=record.reference, payment_id=payment_id)  # fmt: skip
        if view.money_taken:
            if not ctx.policy.refund_unclaimed:
                actions.append("reported")
                states.append(view.state)
                continue
            amount = view.amount - view.refunded_amount
            if amount > 0:
                # A key derived from the record: a recheck repeated after a crash reuses it.
                key = unclaimed_refund_key(record, payment_id)
                yield from refund(
                    payment_id, amount, record.reference, ctx, key=key, currency=view.currency
                )
                refunded += amount
            actions.append("refunded")
            states.append(view.state)
        elif view.stage in NOTHING_TAKEN:
            confirmed = cancelled_here and view.stage is S.CANCELLED
            actions.append("cancelled" if confirmed else "forgotten")
            states.append(view.state)
        else:  # pragma: no cover - every state is handled above; never forget on a surprise
            raise ReplyNotUnderstood(f"payment {payment_id} in state {view.state!r}")
    if "reported" in actions:
        yield Save(replace(record, state="reported"))
        action = "reported"
    else:
        yield Forget(record.idempotency_key)
        action = next((a for a in ("refunded", "cancelled") if a in actions), "forgotten")
    state = ",".join(states) or "none"
    return RecheckResult(record.reference, "pay", action, state, tuple(touched), refunded)
