"""The payment flows, written once and driven by every driver.

Each flow is a generator of effects (see :mod:`payflow.core.messages`): the
httpx clients, the SimPy model and the tests' scripted driver all run these
same objects. A flow never sleeps, opens a socket or reads a clock itself.

``pay``
    save a pending record -> create (one idempotency key for every retry) ->
    poll to a final state -> capture -> forget the record.
``cancel``
    only counts as cancelled when the provider confirms; on 409 or an error it
    polls again, because the payment may have completed meanwhile (Laybuy).
``refund``
    journalled, and retried with the same key and reference.
``recheck``  (in :mod:`payflow.core.recheck`)
    settles what the journal still holds: pending -> cancel, money taken ->
    refund (or report), cancelled/declined -> forget.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from payflow.core import api, validate
from payflow.core.calls import Context, Flow, PollingTimedOut, call, poll_until_settled
from payflow.core.errors import (
    ConflictError,
    OutcomeUnknown,
    PayflowError,
    PaymentCancelled,
    PaymentDeclined,
    ProviderUnavailable,
    RequestRejected,
)
from payflow.core.events import StateChanged
from payflow.core.keys import KeyScope, derived_key, new_key
from payflow.core.messages import Emit, Forget, Now, PendingRecord, Request, Response, Save, Sleep
from payflow.core.policy import MAX_ATTEMPTS_ALLOWED, RetryPolicy
from payflow.core.states import PaymentState, advance, from_provider

__all__ = ["PaymentResult", "cancel", "pay", "payment_key", "refund", "status"]


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """A payment that took money: ``state`` is "captured" or "reserved"."""

    order_id: str
    payment_id: str
    state: str
    amount: int
    currency: str
    idempotency_key: str | None
    correlation_id: str | None = None


def payment_key(order_id: str, ctx: Context) -> str | None:
    """The idempotency key a new payment for ``order_id`` is sent with."""
    scope = ctx.policy.key_scope
    if scope is KeyScope.NONE:
        return None
    if scope is KeyScope.PER_ORDER:
        return derived_key("pay", order_id)
    return new_key(ctx.rng)


def _rejected(resp: Response, operation: str, **refs: Any) -> RequestRejected:
    code = resp.body.get("code") if isinstance(resp.body, Mapping) else None
    message = resp.body.get("message") if isinstance(resp.body, Mapping) else None
    text = f"{operation} refused with HTTP {resp.status}"
    if message:
        text += f": {message}"
    return RequestRejected(
        text, correlation_id=resp.correlation_id, status=resp.status, code=code, **refs
    )


class _Tracker:
    """Follows the client's view of one payment and emits each change."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.state = PaymentState.INITIATED

    def to(self, provider_state: str, payment_id: str | None, at: float) -> Emit | None:
        new = from_provider(provider_state)
        old = self.state
        self.state = advance(old, new)
        if self.state is old:
            return None
        return Emit(StateChanged(self.reference, payment_id, old.value, new.value, at))


def _pick(payments: list[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """Of several payments for one order, the one that matters most."""
    rank = {"captured": 0, "reserved": 1, "initiated": 2}
    live = [p for p in payments if isinstance(p, Mapping)]
    if not live:
        return None
    return min(live, key=lambda p: rank.get(api.payment_state(p), 3))


def _lookup(order_id: str, ctx: Context) -> Flow[list[Mapping[str, Any]]]:
    """Ask the provider which payments exist for ``order_id``."""
    resp = yield from call(api.find_payments(order_id), ctx, order_id)
    if not resp.ok:
        raise _rejected(resp, "lookup", reference=order_id)
    payments = resp.body.get("payments")
    return [p for p in payments if isinstance(p, Mapping)] if isinstance(payments, list) else []


def pay(
    order_id: str,
    amount: int,
    currency: str,
    ctx: Context,
    *,
    pos_id: str | None = None,
    key: str | None = None,
    keep_record: bool = False,
) -> Flow[PaymentResult]:
    """Take a payment for ``order_id``; return it once money is taken.

    Raises :class:`PaymentDeclined` / :class:`PaymentCancelled` when the
    provider confirms no money was taken, :class:`OutcomeUnknown` when the
    journal keeps the payment for a later recheck (treat it as not paid), and
    :class:`ProviderUnavailable` when nothing can have reached the provider.
    ``keep_record`` leaves the journal record for the caller to forget once
    it has stored the result (so a crash in between is recovered).
    """
    validate.reference(order_id, "order_id")
    validate.amount(amount)
    validate.currency(currency)
    if pos_id is not None:
        validate.reference(pos_id, "pos_id")
    if key is not None:
        validate.idempotency_key(key)
    sent_key = key if key is not None else payment_key(order_id, ctx)
    journal_key = sent_key if sent_key is not None else new_key(ctx.rng)
    now: float = yield Now()
    record = PendingRecord(
        order_id, journal_key, "pay", amount, currency, now, key_sent=sent_key is not None
    )
    yield Save(record)  # durable before the first send
    refs: dict[str, Any] = {"reference": order_id, "idempotency_key": sent_key}
    tracker = _Tracker(order_id)
    request = api.create_payment(order_id, amount, currency, sent_key, pos_id)
    body: Mapping[str, Any] | None
    sent = [0]
    try:
        resp = yield from call(request, ctx, order_id, sent=sent)
    except ProviderUnavailable:
        yield Forget(journal_key)  # no attempt can have reached the provider
        raise
    except OutcomeUnknown as exc:
        body = yield from _find_after_unknown(order_id, ctx, request, now, sent)
        if body is None:
            yield Save(replace(record, state="recheck"))
            raise OutcomeUnknown(
                "create got no answer and the order could not be looked up; "
                "treat as not paid -- the journal keeps it for recheck",
                correlation_id=exc.correlation_id,
                **refs,
            ) from exc
    else:
        if resp.status == 409 and sent_key is not None and not _in_progress(resp):
            # Refused (e.g. the POS is busy): nothing was created under this key.
            yield Forget(journal_key)
            raise ConflictError(
                "create answered 409: " + str(resp.body.get("message") or "conflict"),
                correlation_id=resp.correlation_id,
                status=409,
                code=resp.body.get("code"),
                **refs,
            )
        if resp.status == 409:
            # Out of sync (a submit with this key still in flight): query.
            body = yield from _find_after_unknown(
                order_id, ctx, request, now, sent, after_timeout=False
            )
            if body is None:
                yield Save(replace(record, state="recheck"))
                raise OutcomeUnknown(
                    "create is still in progress at the provider; treat as not paid "
                    "-- the journal keeps it for recheck",
                    correlation_id=resp.correlation_id,
                    status=409,
                    **refs,
                )
        elif not resp.ok:
            yield Forget(journal_key)
            raise _rejected(resp, "create", **refs)
        else:
            body = resp.body
    payment_id = str(body.get("paymentId", ""))
    refs["payment_id"] = payment_id
    record = replace(record, payment_id=payment_id)
    yield Save(record)
    try:
        result = yield from _settle(body, record, ctx, tracker, refs)
    except (ProviderUnavailable, RequestRejected) as exc:
        # The payment exists: whatever failed afterwards, money may have been taken.
        yield Save(replace(record, state="recheck"))
        raise OutcomeUnknown(
            f"payment created but its outcome could not be read ({exc.message}); treat as "
            "not paid -- the journal keeps it for recheck",
            correlation_id=exc.correlation_id,
            **refs,
        ) from exc
    if not keep_record:
        yield Forget(journal_key)
    return result


def _in_progress(resp: Response) -> bool:
    """A 409 saying a request with the same idempotency key is still being processed."""
    return resp.status == 409 and resp.body.get("code") == "request_in_progress"


def _find_after_unknown(
    order_id: str,
    ctx: Context,
    request: Request | None = None,
    started: float | None = None,
    sent: list[int] | None = None,
    after_timeout: bool = True,
) -> Flow[Mapping[str, Any] | None]:
    """After an unanswered (or in-progress) create, find *this operation's* payment.

    A keyed create is sent again with the same key: the provider replays the
    first answer, or creates the payment if the first never arrived. Looking
    the order up instead could adopt another operation's payment for the same
    order (a caller's second try with a new key), leaving its own orphaned.
    While the first request is still in progress (409), wait and ask again --
    until the operation's deadline (counted from ``started``) and within
    MobilePay's 6 requests per operation; then the outcome stays unknown.
    A re-send is a retry: it spends the shared retry budget like one (the
    timeout price after an unanswered attempt, asked before any pause, refunded
    if it succeeds as a retried call's is), so an overloaded provider is not kept
    busy by re-sends either (refused, the outcome stays unknown and the
    journal's recheck finds it later). ``after_timeout`` says whether the
    attempt before the first re-send went unanswered (not a 409).
    Keyless creates can only be looked up by order.
    """
    if request is not None and request.idempotency_key is not None:
        retry = ctx.policy.retry
        sent = sent if sent is not None else [retry.max_attempts]
        previous: float | None = None
        attempt = -1
        timed_out = after_timeout
        while sent[0] < MAX_ATTEMPTS_ALLOWED:
            attempt += 1
            now: float = yield Now()
            left = (
                None
                if retry.deadline is None or started is None
                else (retry.deadline - (now - started))
            )
            pause = 0.0
            if attempt:
                previous = retry.backoff.delay(attempt - 1, previous, ctx.rng)
                pause = max(previous, ctx.policy.polling.default_delay)
                if left is not None and pause + retry.min_attempt_timeout >= left:
                    return None
            elif left is not None and left < retry.min_attempt_timeout:
                return None
            cost = 0.0
            if ctx.budget is not None:
                taken = ctx.budget.acquire_retry(after_timeout=timed_out)
                if taken is None:
                    return None  # the budget says the provider is struggling: recheck later
                cost = taken
            if pause:
                yield Sleep(pause)
                if left is not None:
                    left -= pause
            # replace(retry, max_attempts=1, deadline=left) without its field introspection
            single = RetryPolicy(
                max_attempts=1,
                deadline=left,
                backoff=retry.backoff,
                timeouts=retry.timeouts,
                max_server_delay=retry.max_server_delay,
                min_attempt_timeout=retry.min_attempt_timeout,
                retry_unsafe=retry.retry_unsafe,
            )
            try:
                resp = yield from call(
                    request, ctx, order_id, retry=single, sent=sent, cost_paid=cost
                )
            except PayflowError as exc:
                timed_out = isinstance(exc, OutcomeUnknown)  # no answer (not: never sent)
                continue
            if resp.ok:
                return resp.body
            if not _in_progress(resp):
                return None
            timed_out = False  # answered: still in progress
        return None
    try:
        payments = yield from _lookup(order_id, ctx)
    except PayflowError:
        return None
    return _pick(payments)


def _settle(
    body: Mapping[str, Any],
    record: PendingRecord,
    ctx: Context,
    tracker: _Tracker,
    refs: dict[str, Any],
) -> Flow[PaymentResult]:
    """From a created payment to money taken (or a definite failure)."""
    payment_id = record.payment_id or ""
    now: float = yield Now()
    if (emit := tracker.to(api.payment_state(body), payment_id, now)) is not None:
        yield emit
    if api.payment_state(body) == "initiated":
        delay = body.get("pollDelayInMs")
        first = delay if isinstance(delay, int) and not isinstance(delay, bool) else None
        try:
            body = yield from poll_until_settled(payment_id, ctx, record.reference, first)
        except PollingTimedOut:
            body = yield from _give_up_polling(record, ctx, refs)
        now = yield Now()
        if (emit := tracker.to(api.payment_state(body), payment_id, now)) is not None:
            yield emit
    state = api.payment_state(body)
    if state == "reserved" and ctx.policy.capture:
        body = yield from _capture(payment_id, record.amount, record.reference, ctx)
        state = api.payment_state(body)
        now = yield Now()
        if (emit := tracker.to(state, payment_id, now)) is not None:
            yield emit
    if state in api.MONEY_TAKEN_STATES:
        return PaymentResult(
            record.reference,
            payment_id,
            state,
            record.amount,
            record.currency,
            refs.get("idempotency_key"),
            _correlation(body),
        )
    yield Forget(record.idempotency_key)
    if state == "cancelled":
        raise PaymentCancelled("the payment was cancelled", **refs)
    if state in ("declined", "expired"):
        raise PaymentDeclined(f"the payment was {state}", **refs)
    raise ConflictError(f"the payment ended in an unexpected state {state!r}", **refs)


def _give_up_polling(
    record: PendingRecord, ctx: Context, refs: dict[str, Any]
) -> Flow[Mapping[str, Any]]:
    """Laybuy's polling timeout: cancel if we can, else keep it for a recheck."""
    if ctx.policy.cancel_on_give_up:
        try:
            body = yield from cancel(record.payment_id or "", ctx, record.reference)
        except PayflowError:
            pass
        else:
            if api.payment_state(body) != "initiated":
                return body  # cancelled -- or it completed in the race: the real state
    yield Save(replace(record, state="recheck"))
    raise OutcomeUnknown(
        "polling deadline reached; treat as declined -- the journal keeps it for recheck", **refs
    )


def _capture(payment_id: str, amount: int, reference: str, ctx: Context) -> Flow[Mapping[str, Any]]:
    """Capture ``amount`` of a reserved payment; return the payment's real state after."""
    try:
        resp = yield from call(api.capture_payment(payment_id, amount), ctx, reference)
    except (OutcomeUnknown, ProviderUnavailable):
        resp = None
    if resp is not None and resp.ok:
        return resp.body
    # 409 or no answer: the reservation stands (money is taken); read its state.
    current = yield from status(payment_id, ctx, reference)
    return current


def _correlation(body: Mapping[str, Any]) -> str | None:
    value = body.get("correlationId")
    return str(value) if value else None


def status(payment_id: str, ctx: Context, reference: str = "") -> Flow[Mapping[str, Any]]:
    """The provider's current view of a payment (a non-polling GET, retried)."""
    resp = yield from call(api.get_payment(payment_id, polling=False), ctx, reference)
    if not resp.ok:
        raise _rejected(resp, "status", reference=reference or None, payment_id=payment_id)
    return resp.body


def cancel(payment_id: str, ctx: Context, reference: str = "") -> Flow[Mapping[str, Any]]:
    """Cancel a payment; return the provider's body with the *real* final state.

    Only a confirmed cancel reads "cancelled". If the cancel answers 409 or
    gets no answer, the payment may have been approved or declined meanwhile,
    so it is polled again and that state is returned (Laybuy, "Cancelling
    Orders"). Raises :class:`OutcomeUnknown` if neither call is answered.
    """
    try:
        resp: Response | None = yield from call(api.cancel_payment(payment_id), ctx, reference)
    except (OutcomeUnknown, ProviderUnavailable):
        resp = None
    if resp is not None and resp.ok and api.payment_state(resp.body) == "cancelled":
        return resp.body
    try:
        return (yield from status(payment_id, ctx, reference))
    except (ProviderUnavailable, RequestRejected) as exc:
        raise OutcomeUnknown(
            "cancel was not confirmed and the payment could not be read",
            reference=reference or None,
            payment_id=payment_id,
            correlation_id=exc.correlation_id,
        ) from exc


def refund(
    payment_id: str,
    amount: int,
    reference: str,
    ctx: Context,
    *,
    key: str | None = None,
    currency: str = "DKK",
) -> Flow[Mapping[str, Any]]:
    """Refund ``amount`` of a payment; journalled, retried with the same key.

    Raises :class:`OutcomeUnknown` (the journal keeps it; recheck repeats it
    with the same key) when no answer came back.
    """
    validate.reference(payment_id, "payment_id")
    validate.amount(amount)
    validate.reference(reference, "reference")
    if key is None:
        # Derived, so a caller retrying a refund with the same reference reuses the key.
        key = derived_key("refund", payment_id, reference)
    validate.idempotency_key(key)
    now: float = yield Now()
    yield Save(PendingRecord(reference, key, "refund", amount, currency, now, payment_id))
    refs = {"reference": reference, "payment_id": payment_id, "idempotency_key": key}
    try:
        resp = yield from call(
            api.create_refund(payment_id, amount, reference, key), ctx, reference
        )
    except ProviderUnavailable:
        yield Forget(key)
        raise
    if resp.ok:
        yield Forget(key)
        return resp.body
    yield Forget(key)
    if resp.status == 409:
        raise ConflictError(
            "refund refused: the payment is not refundable for that amount",
            correlation_id=resp.correlation_id,
            status=409,
            code=resp.body.get("code"),
            **refs,
        )
    raise _rejected(resp, "refund", **refs)
