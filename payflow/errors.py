"""The exceptions payflow's clients raise, one tree users can catch::

    PayflowError
     ├── InvalidRequest (also ValueError)  a bad argument; nothing was journalled or sent
     ├── PaymentFailed                     the provider confirmed no money was taken
     │    ├── PaymentDeclined              declined by the payer, or expired
     │    └── PaymentCancelled             cancelled (by us or the payer), confirmed
     ├── RequestRejected                   the provider refused the request (a 4xx)
     ├── ProviderUnavailable               retries exhausted / retry budget empty;
     │                                     nothing can have reached the provider
     ├── OutcomeUnknown                    maybe charged: treat as not paid; the journal
     │    │                                keeps it and ``recover()`` settles it
     │    ├── ReplyNotUnderstood           the provider answered in a way the client could
     │    │                                not read (not JSON, wrong shape, unknown state)
     │    └── ProviderMismatch             the reply describes another payment, order,
     │                                     amount or currency: nothing captured or reported
     ├── ConflictError                     a 409 the provider's own records explain (no
     │    │                                money held under this request)
     │    └── PaymentInProgress            the order already has a payment in the journal;
     │                                     nothing was sent
     └── JournalError                      the journal file cannot be opened or written

Every error carries the references a support engineer needs --
``reference`` (the merchant's order id or refund reference), ``payment_id``,
``idempotency_key`` and the provider's ``correlation_id`` -- and never a
token. ``str(error)`` shows them.

The tree is defined in :mod:`payflow.core.errors` (the flows raise it, whatever
drives them); this module re-exports it for users and adds
:class:`JournalError`, which only the I/O side can raise.

>>> from payflow.errors import OutcomeUnknown, PaymentFailed
>>> try:                                               # doctest: +SKIP
...     result = client.pay("order-1", 1995)
... except PaymentFailed:
...     show("Payment declined")
... except OutcomeUnknown:
...     show("We could not confirm the payment; you have not been charged")
"""

from __future__ import annotations

from payflow.core.errors import (
    ConflictError,
    InvalidRequest,
    OutcomeUnknown,
    PayflowError,
    PaymentCancelled,
    PaymentDeclined,
    PaymentFailed,
    PaymentInProgress,
    ProviderMismatch,
    ProviderUnavailable,
    ReplyNotUnderstood,
    RequestRejected,
)

__all__ = [
    "ConflictError",
    "InvalidRequest",
    "JournalError",
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


class JournalError(PayflowError):
    """The crash-recovery journal cannot be opened, read or written.

    ``path`` names the journal file. Raised before anything is sent when the
    journal cannot record a new operation.
    """

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"journal {path!r}: {message}")
        self.path = path
