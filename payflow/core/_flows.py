"""The payment flows, written once and driven by every driver.

Each flow is a generator of effects (see :mod:`payflow.core.messages`): the
httpx clients, the SimPy model and the tests' scripted driver all run these
same objects. A flow never sleeps or opens a socket, and never *chooses* a clock: it reads
the one the driver put in ``Context.clock``.

The rule of money, which every branch below follows: a payment record leaves
the journal only when the provider has confirmed -- in a reply the client fully
understood and that matches the request (:mod:`payflow.core._replies`) -- that no
money is held, or when the money is accounted for (reported to the caller,
captured and stored, or refunded). Anything else is *outcome unknown*: the
record stays, the caller is told "not confirmed", a recheck settles it.

``pay``
    save a pending record -> create (one idempotency key for every retry) ->
    poll to a final state -> capture -> forget the record.
``cancel``
    only counts as cancelled when the provider confirms; on 409 or an error it
    reads the payment again, because it may have completed meanwhile (Laybuy).
``refund``
    journalled, and retried with the same key and reference.
``recheck``  (in :mod:`payflow.core._recheck`)
    settles what the journal still holds: pending -> cancel, money taken ->
    refund (or report), cancelled/declined -> forget.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from payflow.core import _api as api
from payflow.core import _validate as validate
from payflow.core._calls import Context, Flow, PollingTimedOut, call, poll_until_settled
from payflow.core._keys import KeyScope, derived_key, new_key
from payflow.core._policy import MAX_ATTEMPTS_ALLOWED, RetryPolicy
from payflow.core._replies import (
    ANYTHING,
    Expected,
    PaymentStatus,
    Refund,
    read_payment,
    read_payments,
    read_refund,
)
from payflow.core.errors import (
    AuthenticationFailed,
    ConflictError,
    OutcomeUnknown,
    PayflowError,
    PaymentCancelled,
    PaymentDeclined,
    PaymentFailed,
    ProviderMismatch,
    ProviderUnavailable,
    ReplyNotUnderstood,
    RequestRejected,
)
from payflow.core.events import StateChanged
from payflow.core.messages import Forget, PendingRecord, Request, Response, Save
from payflow.core.states import (
    MONEY_HELD,
    NOTHING_TAKEN,
    IllegalTransition,
    PaymentState,
    advance,
    from_provider,
)
from payflow.core.states import PaymentState as S

__all__ = [
    "PaymentResult",
    "cancel",
    "capture",
    "explain_conflict",
    "find_payments",
    "pay",
    "payment_key",
    "refund",
    "refund_key",
    "request_in_progress",
    "status",
]


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


def refund_key(payment_id: str, reference: str) -> str:
    """The idempotency key of a refund: derived, so asking again reuses it."""
    return derived_key("refund", payment_id, reference)


def _rejected(resp: Response, operation: str, **refs: Any) -> RequestRejected:
    message = resp.body.get("message")
    text = f"{operation} refused with HTTP {resp.status}"
    if isinstance(message, str) and message:
        text += f": {message[:200]}"
    return RequestRejected(
        text, correlation_id=resp.correlation_id, status=resp.status, code=resp.code, **refs
    )


def _unconfirmed_refusal(resp: Response, operation: str, refs: dict[str, Any]) -> OutcomeUnknown:
    """A 4xx to a *repeated* request: an earlier attempt may have taken effect
    (a 401 after a timeout says nothing about the first send)."""
    return OutcomeUnknown(
        f"{operation} refused with HTTP {resp.status} after an attempt that may have reached "
        "the provider; not confirmed -- the journal keeps it for recheck",
        correlation_id=resp.correlation_id, status=resp.status, code=resp.code, **refs,
    )  # fmt: skip


def request_in_progress(resp: Response) -> bool:
    """A 409 saying a request with the same idempotency key is still being processed."""
    return resp.status == 409 and resp.code == "request_in_progress"


class _Tracker:
    """Follows the client's view of one payment (the transitions table decides) and
    emits each change. A move the table forbids -- a captured payment reported as
    pending again -- is a reply the client does not understand."""

    def __init__(self, reference: str) -> None:
        self.reference = reference
        self.state = PaymentState.SENT

    def to(self, view: PaymentStatus, at: float) -> StateChanged | None:
        new = from_provider(view.state)
        old = self.state
        try:
            self.state = advance(old, new)
        except IllegalTransition as exc:
            raise ReplyNotUnderstood(
                f"the provider reported an impossible change ({exc})",
                reference=self.reference,
                payment_id=view.payment_id,
            ) from None
        if self.state is old:
            return None
        return StateChanged(self.reference, view.payment_id, old.value, new.value, at)


def find_payments(order_id: str, ctx: Context) -> Flow[list[PaymentStatus]]:
    """Ask the provider which payments exist for ``order_id`` (every one checked)."""
    resp, _ = yield from call(api.find_payments(order_id), ctx, order_id)
    if not resp.ok:
        raise _rejected(resp, "lookup", reference=order_id)
    return read_payments(resp.body, order_id=order_id)


def explain_conflict(order_id: str, ctx: Context, resp: Response, **refs: Any) -> Flow[None]:
    """A create answered 409 (other than "in progress"): did it create anything?

    The 409 alone proves nothing -- it may come after the provider committed
    (a proxy, a race, a bug). The order's payments decide: none that holds or
    may still take money means nothing is held under this request, and the
    refusal stands (:class:`ConflictError`). Otherwise, or if the lookup is
    not understood, the outcome is unknown and the journal keeps it.
    """
    code = resp.code
    what = f"create answered 409{f' ({code})' if code else ''}"
    try:
        payments = yield from find_payments(order_id, ctx)
    except PayflowError as exc:
        raise OutcomeUnknown(
            f"{what} and the order could not be checked; treat as not paid -- "
            "the journal keeps it for recheck",
            correlation_id=resp.correlation_id, status=409, code=code, **refs,
        ) from exc  # fmt: skip
    if any(p.stage not in NOTHING_TAKEN for p in payments):
        raise OutcomeUnknown(
            f"{what} but the order has a payment that may be this one; treat as not paid "
            "-- the journal keeps it for recheck",
            correlation_id=resp.correlation_id, status=409, code=code, **refs,
        )  # fmt: skip
    message = resp.body.get("message")
    raise ConflictError(
        f"{what}: {message[:200] if isinstance(message, str) and message else 'conflict'}",
        correlation_id=resp.correlation_id, status=409, code=code, **refs,
    )  # fmt: skip


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
    provider confirms no money was taken, :class:`OutcomeUnknown` (with its
    kinds :class:`ReplyNotUnderstood` and :class:`ProviderMismatch`) when the
    journal keeps the payment for a later recheck (treat it as not paid),
    :class:`ConflictError` when a 409 is explained by the order's payments
    (none holds money), :class:`RequestRejected` for another 4xx, and
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
    now: float = ctx.clock()
    record = PendingRecord(
        order_id, journal_key, "pay", amount, currency, now, key_sent=sent_key is not None
    )
    yield Save(record, first=True)  # durable before the first send
    refs: dict[str, Any] = {"reference": order_id, "idempotency_key": sent_key}
    request = api.create_payment(order_id, amount, currency, sent_key, pos_id)
    expect = Expected(order_id, amount, currency)  # what the caller asked, not the request
    try:
        view = yield from _create(request, expect, ctx, now, refs)
    except (ProviderUnavailable, ConflictError, RequestRejected):
        yield Forget(journal_key)  # nothing reached the provider, or it held nothing
        raise
    except (OutcomeUnknown, AuthenticationFailed):
        # AuthenticationFailed: an earlier attempt may have landed; recover() settles it.
        yield Save(replace(record, state="recheck"))
        raise
    refs["payment_id"] = view.payment_id
    record = replace(record, payment_id=view.payment_id)
    yield Save(record)
    try:
        result = yield from _settle(view, record, ctx, refs)
    except PaymentFailed:
        raise  # confirmed: nothing taken, the record is gone
    except PayflowError as exc:
        # The payment exists: whatever failed afterwards, money may have been taken.
        yield Save(replace(record, state="recheck"))
        if isinstance(exc, OutcomeUnknown | AuthenticationFailed):
            raise
        raise OutcomeUnknown(
            f"payment created but its outcome could not be read ({exc.message}); treat as "
            "not paid -- the journal keeps it for recheck",
            correlation_id=exc.correlation_id,
            **refs,
        ) from exc
    if not keep_record:
        yield Forget(journal_key)
    return result


def _create(
    request: Request, expect: Expected, ctx: Context, started: float, refs: dict[str, Any]
) -> Flow[PaymentStatus]:
    """Send the create; return the payment it made, checked against ``expect`` (the
    order, amount and currency the caller asked for)."""
    order_id = refs["reference"]
    try:
        resp, sent = yield from call(request, ctx, order_id)
    except OutcomeUnknown as exc:
        # A call that gives up has sent at most its policy's attempts: counting on
        # all of them keeps the operation within MobilePay's 6 requests.
        correlation, answered, sent = exc.correlation_id, False, ctx.policy.retry.max_attempts
    else:
        correlation, answered = resp.correlation_id, True
        if resp.ok:
            try:
                return read_payment(resp.body, expect=expect, what="create")
            except ProviderMismatch as exc:
                raise ProviderMismatch(exc.message, correlation_id=correlation, **refs) from None
            except ReplyNotUnderstood:
                pass  # ask again, below: the provider replays the first answer under the key
        elif resp.status == 409 and not request_in_progress(resp):
            yield from explain_conflict(order_id, ctx, resp, **refs)
        elif resp.status != 409:
            if sent > 1:
                raise _unconfirmed_refusal(resp, "create", refs)
            raise _rejected(resp, "create", **refs)
    found = yield from _find_created(request, ctx, started, sent, expect, timed_out=not answered)
    if found is None:
        raise OutcomeUnknown(
            "create got no answer the client could use; treat as not paid "
            "-- the journal keeps it for recheck",
            correlation_id=correlation,
            **refs,
        )
    return found


def _find_created(
    request: Request,
    ctx: Context,
    started: float,
    sent: int,
    expect: Expected,
    *,
    timed_out: bool,
) -> Flow[PaymentStatus | None]:
    """After an unanswered, unreadable or in-progress create, find *this operation's* payment.

    A keyed create is sent again with the same key: the provider replays the
    first answer, or creates the payment if the first never arrived. Looking
    the order up instead could adopt another operation's payment for the same
    order (a caller's second try with a new key), leaving its own orphaned.

    The re-sends are the one retry loop (:func:`call`) under the operation's
    policy with three changes (:func:`_resend_policy`): what is left of the
    operation's deadline (counted from ``started``) and of MobilePay's 6
    requests (``sent`` were sent), and a pause never shorter than polling's.
    An answer saying the first request is still in progress (409), or one that
    cannot be read, means "ask again". The first re-send goes at once, and is a
    retry of the operation: it takes the shared retry budget like one (the
    timeout price after an unanswered create), refunded if the re-sends
    succeed, so an overloaded provider is not kept busy by re-sends either.
    When the loop stops, the outcome stays unknown (``None``). Keyless creates
    can only be looked up by order. A reply about something else raises
    :class:`ProviderMismatch`.
    """
    order_id = expect.order_id or ""
    if request.idempotency_key is None:
        try:
            payments = yield from find_payments(order_id, ctx)
        except ProviderMismatch:
            raise
        except PayflowError:
            return None
        return _pick(payments)
    if ctx.policy.key_scope is KeyScope.PER_ATTEMPT:
        # Re-sends replay this key: they exist to find the payment it made, which a
        # fresh key (the per-attempt anti-pattern) never finds.
        ctx = replace(ctx, policy=replace(ctx.policy, key_scope=KeyScope.PER_OPERATION))
    policy = _resend_policy(ctx, ctx.clock() - started, sent)
    if policy is None or policy.attempt_timeout(request, 0.0) is None:
        return None  # no request or no time left for one
    cost = 0.0
    if ctx.budget is not None:
        taken = ctx.budget.acquire_retry(after_timeout=timed_out)
        if taken is None:
            return None  # the budget says the provider is struggling: recheck later
        cost = taken

    def unusable(resp: Response) -> bool:
        """Still in progress, or a 2xx the client cannot read: ask again."""
        if request_in_progress(resp):
            return True
        if not resp.ok:
            return False
        try:
            read_payment(resp.body, expect=expect, what="create")
        except ProviderMismatch:
            return False  # about something else: not to be asked again, but raised below
        except ReplyNotUnderstood:
            return True
        return False

    try:
        resp, _ = yield from call(
            request, ctx, order_id, policy, ask_again=unusable, cost_paid=cost
        )
    except AuthenticationFailed:
        raise  # asking again cannot help: the caller keeps the record
    except PayflowError:
        return None  # no usable answer in time, within the requests left
    if resp.ok:
        return read_payment(resp.body, expect=expect, what="create")
    return None  # refused now, or out of sync: the recheck settles it


def _resend_policy(ctx: Context, elapsed: float, sent: int) -> RetryPolicy | None:
    """The operation's retry policy for its re-sends, ``elapsed`` seconds and ``sent``
    requests into it; ``None`` when nothing is left of either."""
    retry = ctx.policy.retry
    left = None if retry.deadline is None else retry.deadline - elapsed
    if sent >= MAX_ATTEMPTS_ALLOWED or (left is not None and left <= 0):
        return None
    return replace(
        retry,
        max_attempts=MAX_ATTEMPTS_ALLOWED - sent,
        deadline=left,
        min_delay=max(retry.min_delay, ctx.policy.polling.default_delay),
    )


def _pick(payments: list[PaymentStatus]) -> PaymentStatus | None:
    """Of several payments for one order, the one that matters most."""
    rank = {S.CAPTURED: 0, S.RESERVED: 1, S.PENDING: 2}
    return min(payments, key=lambda p: rank.get(p.stage, 3), default=None)


def _settle(
    view: PaymentStatus, record: PendingRecord, ctx: Context, refs: dict[str, Any]
) -> Flow[PaymentResult]:
    """From a created payment to money taken (or a confirmed failure)."""
    payment_id = view.payment_id
    expect = Expected(record.reference, record.amount, record.currency)
    tracker = _Tracker(record.reference)
    if (change := tracker.to(view, ctx.clock())) is not None:
        yield change
    if view.stage is S.PENDING:
        try:
            view = yield from poll_until_settled(
                payment_id, ctx, record.reference, view.poll_delay_ms, expect=expect,
                ask_operator=True,
            )  # fmt: skip
        except PollingTimedOut as stopped:
            view = yield from _give_up_polling(record, ctx, refs, stopped.by)
        if (change := tracker.to(view, ctx.clock())) is not None:
            yield change
    if view.stage in MONEY_HELD and ctx.policy.capture:
        view = yield from capture(payment_id, record.amount, ctx, record.reference, expect)
        if (change := tracker.to(view, ctx.clock())) is not None:
            yield change
    if view.money_taken:
        return PaymentResult(
            record.reference,
            payment_id,
            view.state,
            record.amount,
            record.currency,
            refs.get("idempotency_key"),
            view.correlation_id,
        )
    if view.stage is S.PENDING:  # the provider still waits for the payer: not settled
        raise OutcomeUnknown("the payment is still pending; the journal keeps it", **refs)
    yield Forget(record.idempotency_key)  # declined, cancelled or expired: confirmed
    if view.stage is S.CANCELLED:
        raise PaymentCancelled("the payment was cancelled", **refs)
    raise PaymentDeclined(f"the payment was {view.state}", **refs)


def _give_up_polling(
    record: PendingRecord, ctx: Context, refs: dict[str, Any], by: str = "deadline"
) -> Flow[PaymentStatus]:
    """Laybuy's polling timeout (``by`` the deadline, or the operator who gave up):
    cancel if we can, else keep it for a recheck."""
    if ctx.policy.cancel_on_give_up:
        try:
            expect = Expected(record.reference, record.amount, record.currency)
            view = yield from cancel(record.payment_id or "", ctx, record.reference, expect)
        except ProviderMismatch:
            raise
        except PayflowError:
            pass
        else:
            if view.stage is not S.PENDING:
                return view  # cancelled -- or it completed in the race: the real state
    why = "the operator gave up waiting" if by == "operator" else "polling deadline reached"
    raise OutcomeUnknown(f"{why}; treat as declined -- the journal keeps it for recheck", **refs)


def capture(
    payment_id: str,
    amount: int,
    ctx: Context,
    reference: str = "",
    expect: Expected = ANYTHING,
) -> Flow[PaymentStatus]:
    """Capture ``amount`` of a reserved payment; return the payment's real state after.

    A reply that is not a capture of this payment is not believed: the payment
    is read again (the reservation stands either way: money is taken).
    """
    if expect.amount is None:
        expect = replace(expect, amount=amount)
    request = api.capture_payment(payment_id, amount)
    view = yield from _confirmed(request, S.CAPTURED, payment_id, ctx, reference, expect)
    if view is not None:
        return view
    # 409, no answer, an odd reply: the reservation stands (money is taken); read it.
    return (yield from status(payment_id, ctx, reference, expect))


def _confirmed(
    request: Request,
    state: PaymentState,
    payment_id: str,
    ctx: Context,
    reference: str,
    expect: Expected,
) -> Flow[PaymentStatus | None]:
    """Send a naturally idempotent write (capture, cancel); the payment if a reply the
    client understood says it reached ``state``, else ``None`` (the caller reads it)."""
    try:
        resp, _ = yield from call(request, ctx, reference)
    except (OutcomeUnknown, ProviderUnavailable):
        return None
    if not resp.ok:
        return None
    try:
        view = read_payment(resp.body, payment_id=payment_id, expect=expect, what=request.operation)
    except ReplyNotUnderstood:
        return None
    return view if view.stage is state else None


def status(
    payment_id: str, ctx: Context, reference: str = "", expect: Expected = ANYTHING
) -> Flow[PaymentStatus]:
    """The provider's current view of a payment (a non-polling GET, retried).

    ``expect`` (order, amount, currency) is checked against the
    reply when given. Raises :class:`ReplyNotUnderstood` or
    :class:`ProviderMismatch` for a reply that cannot be trusted.
    """
    resp, _ = yield from call(api.get_payment(payment_id, polling=False), ctx, reference)
    refs: dict[str, Any] = {"reference": reference or None, "payment_id": payment_id}
    if not resp.ok:
        raise _rejected(resp, "status", **refs)
    try:
        return read_payment(resp.body, payment_id=payment_id, expect=expect, what="status")
    except OutcomeUnknown as exc:
        raise type(exc)(exc.message, correlation_id=resp.correlation_id, **refs) from None


def cancel(
    payment_id: str, ctx: Context, reference: str = "", expect: Expected = ANYTHING
) -> Flow[PaymentStatus]:
    """Cancel a payment; return the *real* state the provider confirmed.

    Only a confirmed cancel (a reply understood, about this payment, saying
    "cancelled") reads "cancelled". If the cancel answers 409, gets no answer or
    an odd one, the payment may have been approved or declined meanwhile, so it
    is read again and that state is returned (Laybuy, "Cancelling Orders").
    Raises :class:`OutcomeUnknown` if neither call gives an answer it can trust.
    """
    request = api.cancel_payment(payment_id)
    view = yield from _confirmed(request, S.CANCELLED, payment_id, ctx, reference, expect)
    if view is not None:
        return view
    try:
        return (yield from status(payment_id, ctx, reference, expect))
    except (ProviderMismatch, ReplyNotUnderstood):
        raise
    except PayflowError as exc:
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
) -> Flow[Refund]:
    """Refund ``amount`` of a payment; journalled, retried with the same key.

    The record is forgotten once the refund is confirmed, or once the
    provider's own view of the payment explains a refusal. Raises
    :class:`OutcomeUnknown` (the journal keeps it; recheck repeats it with the
    same key) when no usable answer came back, :class:`ConflictError` when the
    payment cannot be refunded that much (confirmed by reading it).
    """
    validate.payment_id(payment_id)
    validate.amount(amount)
    validate.reference(reference, "reference")
    if key is None:
        key = refund_key(payment_id, reference)  # a caller asking again reuses it
    validate.idempotency_key(key)
    now: float = ctx.clock()
    record = PendingRecord(reference, key, "refund", amount, currency, now, payment_id)
    yield Save(record)
    refs: dict[str, Any] = {
        "reference": reference,
        "payment_id": payment_id,
        "idempotency_key": key,
    }
    try:
        resp, sent = yield from call(
            api.create_refund(payment_id, amount, reference, key), ctx, reference
        )
    except ProviderUnavailable:
        yield Forget(key)
        raise
    except (OutcomeUnknown, AuthenticationFailed):
        yield Save(replace(record, state="recheck"))
        raise
    if resp.ok:
        try:
            done = read_refund(resp.body, payment_id=payment_id, amount=amount, reference=reference)
        except OutcomeUnknown as exc:
            yield Save(replace(record, state="recheck"))
            raise type(exc)(exc.message, correlation_id=resp.correlation_id, **refs) from None
        yield Forget(key)
        return done
    if resp.status == 409:
        yield from _explain_refund_conflict(record, ctx, resp, refs)
    if sent > 1:
        yield Save(replace(record, state="recheck"))
        raise _unconfirmed_refusal(resp, "refund", refs)
    yield Forget(key)
    raise _rejected(resp, "refund", **refs)


def _explain_refund_conflict(
    record: PendingRecord, ctx: Context, resp: Response, refs: dict[str, Any]
) -> Flow[None]:
    """A refund answered 409: believe it only if the payment cannot be refunded that much.

    The payment is read: no money taken, or less left to refund than asked,
    explains the refusal (the record goes; :class:`ConflictError`). Otherwise the
    409 may have come after the refund was made: the record stays for recheck.
    """
    code = resp.code
    try:
        view = yield from status(record.payment_id or "", ctx, record.reference)
    except PayflowError:
        view = None
    if view is not None and (
        not view.money_taken or view.amount - view.refunded_amount < record.amount
    ):
        yield Forget(record.idempotency_key)
        raise ConflictError(
            "refund refused: the payment is not refundable for that amount "
            f"({view.state}, {view.amount - view.refunded_amount} left to refund)",
            correlation_id=resp.correlation_id, status=409, code=code, **refs,
        )  # fmt: skip
    yield Save(replace(record, state="recheck"))
    raise OutcomeUnknown(
        f"refund answered 409{f' ({code})' if code else ''} but the payment could still be "
        "refunded; not confirmed -- the journal keeps it for recheck",
        correlation_id=resp.correlation_id, status=409, code=code, **refs,
    )  # fmt: skip
