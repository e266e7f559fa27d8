"""The exceptions payflow raises, one tree for every driver::

    PayflowError
     ├── InvalidRequest (also ValueError)  bad argument; nothing was journalled or sent
     ├── PaymentFailed                     the provider says no money was taken
     │    ├── PaymentDeclined              declined by the payer, or expired
     │    └── PaymentCancelled             cancelled (by us or the payer), confirmed
     ├── RequestRejected                   the provider refused the request (4xx)
     ├── ProviderUnavailable               retries exhausted / budget empty; nothing sent
     ├── OutcomeUnknown                    maybe charged: the journal keeps it for recheck
     │    ├── ReplyNotUnderstood           a reply the client could not read (kept, rechecked)
     │    └── ProviderMismatch             a reply that does not match the request (kept)
     ├── ConflictError                     a 409 the provider's own records explain
     │    └── PaymentInProgress            the order already has a payment in the journal

Every error carries the references a support engineer needs -- the merchant
reference, the payment id, the idempotency key and the provider's correlation
id -- and never a token.
"""

from __future__ import annotations

__all__ = [
    "ConflictError",
    "InvalidRequest",
    "OutcomeUnknown",
    "PayflowError",
    "PaymentCancelled",
    "PaymentDeclined",
    "PaymentFailed",
    "PaymentInProgress",
    "ProviderMismatch",
    "ProviderUnavailable",
    "ReplyNotUnderstood",
    "RequestRejected",
]


class PayflowError(Exception):
    """Base of every payflow error."""

    def __init__(
        self,
        message: str,
        *,
        reference: str | None = None,
        payment_id: str | None = None,
        idempotency_key: str | None = None,
        correlation_id: str | None = None,
        status: int | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reference = reference
        self.payment_id = payment_id
        self.idempotency_key = idempotency_key
        self.correlation_id = correlation_id
        self.status = status
        self.code = code

    def __str__(self) -> str:
        parts = [self.message]
        for label, value in (
            ("reference", self.reference),
            ("payment", self.payment_id),
            ("idempotency key", self.idempotency_key),
            ("correlation id", self.correlation_id),
        ):
            if value:
                parts.append(f"{label}={value}")
        return "; ".join(parts)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class InvalidRequest(PayflowError, ValueError):
    """An argument is invalid; ``field`` names it. Nothing was journalled or sent."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class PaymentFailed(PayflowError):
    """The provider confirmed the payment took no money."""

    state: str = "failed"


class PaymentDeclined(PaymentFailed):
    """The payer declined, or the payment expired unanswered."""

    state = "declined"


class PaymentCancelled(PaymentFailed):
    """The payment was cancelled and the provider confirmed it."""

    state = "cancelled"


class RequestRejected(PayflowError):
    """The provider refused the request with a 4xx other than 409 (see ``status``, ``code``)."""


class ProviderUnavailable(PayflowError):
    """Retries were exhausted or the retry budget was empty, and no attempt can
    have had an effect (or the call was a read)."""


class OutcomeUnknown(PayflowError):
    """An attempt may have reached the provider but no answer came back.

    The journal keeps the operation; ``recheck``/``recover`` settles it later
    (a pending payment is cancelled, a charged one refunded or reported).
    """


class ReplyNotUnderstood(OutcomeUnknown):
    """The provider answered, but not in a way the client fully understood.

    A body that is not JSON, JSON of the wrong shape, a state the client does
    not know, a payment id that is not one: the request may have taken effect,
    so it is treated as unanswered -- the journal keeps the operation.
    """


class ProviderMismatch(OutcomeUnknown):
    """A reply describes something other than what was asked for.

    Another order's payment, another amount or currency, another payment id:
    nothing is captured or reported as paid on such a reply, and the journal
    keeps the operation for a recheck (and a person) to settle.
    """


class ConflictError(PayflowError):
    """The provider answered 409, and its own records explain it: no money is held
    under this request (the create or refund was refused)."""


class PaymentInProgress(ConflictError):
    """The order already has a payment in the journal (in progress here or in another
    process sharing the journal, or awaiting ``recover()``); nothing was sent.

    One payment in flight per order per journal: settle the first (wait for it,
    ``recover()`` it, or ``acknowledge()`` a stored one) before paying again.
    """
