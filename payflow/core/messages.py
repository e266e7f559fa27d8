"""Requests, outcomes and effects: the vocabulary flows and drivers share.

A flow (see :mod:`payflow.core._flows`) is a generator. It *yields* effects and
is *sent* the result of each one by a driver:

=================  ===========================================  ======================
effect             what the driver does                         what it sends back
=================  ===========================================  ======================
:class:`Call`      send the request, give up after ``timeout``  an :data:`Outcome`
:class:`Sleep`     wait ``seconds``                             ``None``
:class:`Save`      commit the record durably                    ``None``
:class:`Forget`    delete the record                            ``None``
an event          pass it to hooks / monitors (events from     ``None``
                  :mod:`payflow.core.events` travel bare)
:class:`Authen-    a request was refused with 401: get fresh    ``True`` if it has
 ticate`           credentials for the next send                credentials to try
:class:`AskOper-   ask the operator whether to keep waiting     ``True``: keep polling,
 ator`             for a pending payment                        ``False``: give up
=================  ===========================================  ======================

The outcome of a call is one of three things, and the difference matters for
money: a :class:`Response` (the provider answered), :class:`TimedOut` (no answer
in time -- the request may or may not have reached the provider, so the outcome
is *unknown*), or :class:`NotSent` (the connection was refused: the request
certainly did not reach the provider).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

__all__ = [
    "AskOperator",
    "Authenticate",
    "Call",
    "CallKind",
    "Effect",
    "Forget",
    "NotSent",
    "Outcome",
    "PendingRecord",
    "Request",
    "Response",
    "Save",
    "Sleep",
    "TimedOut",
    "json_object",
]


class CallKind(Enum):
    """What a call does, which sets its timeout (MobilePay: 2 s / 0.5 s / 0.5 s)."""

    WRITE = "write"  # POST, PUT, DELETE
    READ = "read"  # a non-polling GET
    POLL = "poll"  # a GET repeated until a state changes


def _freeze(mapping: Mapping[str, Any] | None) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted((mapping or {}).items()))


@dataclass(frozen=True, slots=True)
class Request:
    """One API request, before any transport touches it.

    ``idempotency_key`` is sent as the ``X-MobilePay-Idempotency-Key`` header.
    ``naturally_idempotent`` marks POSTs the provider guarantees are safe to
    repeat without a key (cancel, capture), as the MobilePay principles say.
    """

    method: str
    path: str
    body: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    kind: CallKind = CallKind.WRITE
    naturally_idempotent: bool = False
    operation: str = ""  # a label for hooks and metrics: "create", "poll", ...

    @property
    def safe_to_repeat(self) -> bool:
        """True if sending this request twice cannot have a second effect."""
        return (
            self.method in ("GET", "HEAD", "OPTIONS")
            or self.idempotency_key is not None
            or self.naturally_idempotent
        )

    def __hash__(self) -> int:
        return hash((self.method, self.path, _freeze(self.body), self.idempotency_key))


@dataclass(frozen=True, slots=True)
class Response:
    """The provider answered. ``body`` is the decoded JSON object (or ``{}``)."""

    status: int
    body: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def header(self, name: str) -> str | None:
        """Case-insensitive header lookup."""
        lowered = name.lower()
        for key, value in self.headers.items():
            if key.lower() == lowered:
                return value
        return None

    @property
    def code(self) -> str | None:
        """The provider's error ``code``, if it gave a usable one (a non-empty string)."""
        code = self.body.get("code") if isinstance(self.body, Mapping) else None
        return code if isinstance(code, str) and code else None

    @property
    def correlation_id(self) -> str | None:
        value = self.body.get("correlationId") if isinstance(self.body, Mapping) else None
        return str(value) if value else self.header("x-correlation-id")

    def __hash__(self) -> int:
        return hash((self.status, repr(self.body)))


@dataclass(frozen=True, slots=True)
class TimedOut:
    """No answer within the timeout, or the connection broke after sending.

    The provider may have acted on the request: the outcome is unknown.
    """

    reason: str = "timeout"


@dataclass(frozen=True, slots=True)
class NotSent:
    """The request certainly did not reach the provider (connection refused)."""

    reason: str = "connection refused"


Outcome = Response | TimedOut | NotSent


def json_object(payload: bytes) -> dict[str, Any]:
    """The JSON object ``payload`` holds, or ``{}`` for anything else.

    Not JSON, not UTF-8, too deeply nested to decode (``RecursionError``), an
    integer too long to read, JSON that is not an object: all ``{}``, which the
    reply readers (:mod:`payflow.core._replies`) then find not understood. Every
    driver decodes a provider's bytes with this, so all see the same reply.
    """
    if not payload:
        return {}
    try:
        body = json.loads(payload)
    except Exception:  # ValueError, UnicodeDecodeError, RecursionError: unreadable
        return {}
    return body if isinstance(body, dict) else {}


@dataclass(frozen=True, slots=True)
class PendingRecord:
    """What the journal keeps about an operation whose outcome is not yet final.

    Written *before* the first send (Laybuy: "save it to persistent storage so
    it can be used for crash recovery"), removed when the outcome is final.
    """

    reference: str  # the merchant's order id (payments) or refund reference
    idempotency_key: str
    operation: str  # "pay" or "refund"
    amount: int  # minor units
    currency: str
    created_at: float
    payment_id: str | None = None  # known once the provider answered a create
    state: str = "pending"  # "pending", "recheck" (gave up; settle later) or "reported"
    key_sent: bool = True  # False: a keyless create; the key only names the record


@dataclass(frozen=True, slots=True)
class Call:
    """Send ``request``; give up waiting after ``timeout`` seconds."""

    request: Request
    timeout: float


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next step."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Save:
    """Durably record ``record`` (replacing any record with the same key).

    ``first`` marks a new payment's first save: a journal shared by several
    payments may refuse it when the order already has a payment in flight
    (one payment per order per journal); the driver then raises
    :class:`~payflow.core.errors.PaymentInProgress` and nothing is sent.
    """

    record: PendingRecord
    first: bool = False


@dataclass(frozen=True, slots=True)
class Forget:
    """Remove the journal record kept under ``idempotency_key``."""

    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Authenticate:
    """The last request was refused with 401: make fresh credentials ready.

    A 401 means the provider did not process the request, so the flow sends it
    again -- same idempotency key, not a retry -- if the driver answers ``True``
    (it has credentials to try: a token provider was asked for a new token, or
    another request already got one). A driver with a fixed token answers
    ``False``, and the 401 stands. The token itself never enters the core.
    """


@dataclass(frozen=True, slots=True)
class AskOperator:
    """Ask the operator whether to keep waiting for a payment still pending.

    ``waited_s`` is how long the payment has been polled. The driver sends back
    ``True`` (keep polling) or ``False`` (give up: the flow cancels, confirms the
    cancel, and keeps the record for a recheck if it cannot).
    """

    reference: str
    payment_id: str
    waited_s: float


#: What a flow asks its driver to do (events of :mod:`payflow.core.events` are yielded too,
#: bare: the driver hands them to hooks).
Effect = Call | Sleep | Save | Forget | Authenticate | AskOperator
