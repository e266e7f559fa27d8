"""The reference provider's books: payments, refunds and idempotency records.

:class:`Ledger` is *pure*: it performs no I/O, reads no clock and draws every
random number (ids, correlation ids, payer decisions) from the
:class:`random.Random` it is given. Time is passed in as ``now`` (seconds on any
clock the caller likes; the HTTP server uses simulated seconds since midnight of
day 0, a SimPy model uses ``env.now``). The wire contract is ``docs/api.md``.

Requests go through two phases so that latency *before* and *after* the
provider commits, and the "still in flight" conflict, can be modelled by the
caller:

``begin(client_id, request, now)``
    Routes and validates the request and checks its idempotency key. It returns
    a :class:`~payflow.core.messages.Response` straight away when the answer
    needs no state change -- an error (unknown path, bad field, missing key,
    ``422``/``409`` key conflicts) or the replay of a stored response -- and a
    :class:`Ticket` otherwise. Every well-formed request, GETs included, gets a
    ticket, so the moment it "happens" is the commit.
``commit(ticket, now)``
    Applies the change at ``now`` and answers. Responses to keyed requests are
    stored under the key, business errors (``404``/``409``) included;
    validation errors found by ``begin`` are *not* stored (Stripe semantics: a
    client may fix its body and retry with the same key).
``abandon(ticket)``
    The request died before commit (connection reset): the key is released
    and nothing is stored.

Unknown body fields and unknown query parameters are *rejected* (400
``unknown_field`` / ``invalid_query``) so that a client's typo never silently
becomes a default.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import parse_qsl

from payflow.core._api import CORRELATION_HEADER
from payflow.core._validate import CURRENCY_PATTERN, KEY_PATTERN, MAX_AMOUNT, REFERENCE_PATTERN
from payflow.core.messages import Request, Response
from payflow.core.states import MONEY_TAKEN_STATES, PAYMENT_STATES

__all__ = [
    "DEFAULT_RESERVATION_EXPIRY_S",
    "MAX_AMOUNT",
    "PAYMENT_STATES",
    "HugeNumber",
    "Ledger",
    "PayerModel",
    "Ticket",
    "error_body",
]

# The limits (MAX_AMOUNT, the reference / key / currency patterns) are those of
# payflow.core._validate, so the client rejects exactly what the provider would.

#: How long a reservation that is never captured holds the payer's money before the
#: provider releases it (the payment becomes ``expired``): 7 days, the shortest period
#: Vipps MobilePay states (card payments "as short as 7 days"; MobilePay 14 days, Vipps
#: 180 days -- developer.vippsmobilepay.com, "Capture attempt deadlines").
DEFAULT_RESERVATION_EXPIRY_S: Final = 7 * 86_400.0

# PAYMENT_STATES, every state a payment can be in, is the wire contract's (one definition,
# in payflow.core._replies, which the client reads replies with).

_ID_RE = re.compile(REFERENCE_PATTERN)
_KEY_RE = re.compile(KEY_PATTERN)
_CURRENCY_RE = re.compile(CURRENCY_PATTERN)

#: RFC 4122 variant and version 4 bits, as ``uuid.UUID(..., version=4)`` sets them.
_UUID_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID_SET = (0x8000 << 48) | (4 << 76)

_PAYMENTS = "/v10/payments"
_REFUNDS = "/v10/refunds"


def error_body(code: str, message: str, correlation_id: str) -> dict[str, str]:
    """The error body every failure carries: ``{"code", "message", "correlationId"}``."""
    return {"code": code, "message": message, "correlationId": correlation_id}


@dataclass(frozen=True, slots=True)
class HugeNumber:
    """An integer from a JSON body too long to be worth converting (the app makes these).

    Python refuses to convert integers of more than 4300 digits, and no field
    takes one anywhere near that long, so the server keeps just its size (and a
    digest, so equal texts are equal) and lets validation name the field.
    """

    digits: int
    negative: bool
    digest: str

    @classmethod
    def of(cls, text: str) -> HugeNumber:
        """The stand-in for the JSON integer literal ``text`` (e.g. ``"-999..."``)."""
        negative = text.startswith("-")
        digest = hashlib.sha256(text.encode("ascii", "replace")).hexdigest()[:32]
        return cls(len(text) - negative, negative, digest)

    def describe(self) -> str:
        sign = "a negative" if self.negative else "an"
        return f"{sign} integer of {self.digits} digits"


@dataclass(frozen=True, slots=True)
class PayerModel:
    """How the payer behind each payment answers, drawn when the payment is created.

    With probability ``abandon_probability`` the payer never answers and the
    payment expires ``expire_after_s`` after creation. Otherwise the payer
    decides after a delay drawn uniformly from ``decide_after_s`` and approves
    with ``approve_probability`` (the payment becomes ``reserved``) or declines.
    A decision that would come after ``expire_after_s`` is an expiry.
    """

    approve_probability: float = 0.95
    decide_after_s: tuple[float, float] = (2.0, 10.0)
    expire_after_s: float = 300.0
    abandon_probability: float = 0.0

    def __post_init__(self) -> None:
        for name in ("approve_probability", "abandon_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"PayerModel.{name} must be in [0, 1], got {value!r}")
        low, high = self.decide_after_s
        if not 0.0 <= low <= high:
            raise ValueError(
                f"PayerModel.decide_after_s must be (min, max) with 0 <= min <= max, "
                f"got {self.decide_after_s!r}"
            )
        if self.expire_after_s <= 0:
            raise ValueError(
                f"PayerModel.expire_after_s must be positive, got {self.expire_after_s!r}"
            )

    def draw(self, rng: random.Random, created_at: float) -> tuple[float, str]:
        """Return ``(decision_time, final_state)`` for a payment created at ``created_at``.

        Always draws exactly three numbers, so one payment's parameters never
        shift the random stream of the next.
        """
        u_abandon = rng.random()
        delay = rng.uniform(*self.decide_after_s)
        u_approve = rng.random()
        if u_abandon < self.abandon_probability or delay >= self.expire_after_s:
            return created_at + self.expire_after_s, "expired"
        state = "reserved" if u_approve < self.approve_probability else "declined"
        return created_at + delay, state


@dataclass(slots=True)
class _Payment:
    payment_id: str
    client_id: str
    order_id: str
    amount: int
    currency: str
    pos_id: str | None
    created_at: float
    decide_at: float
    decision: str
    state: str = "initiated"
    captured_amount: int = 0
    refunded_amount: int = 0
    updated_at: float = 0.0
    captured_at: float | None = None


@dataclass(slots=True)
class _Refund:
    refund_id: str
    client_id: str
    payment_id: str
    amount: int
    reference: str
    created_at: float
    state: str = "completed"


@dataclass(slots=True)
class _Record:
    fingerprint: str
    response: Response
    stored_at: float


@dataclass(frozen=True, slots=True)
class Ticket:
    """A validated request waiting to be committed (see :meth:`Ledger.commit`).

    ``operation`` is one of ``create``, ``get``, ``lookup``, ``cancel``,
    ``capture``, ``refund``, ``get_refund``; ``params`` holds its validated
    arguments; ``scope`` is ``(client_id, idempotency_key)`` when the request is
    keyed.
    """

    serial: int
    client_id: str
    operation: str
    params: Mapping[str, Any]
    scope: tuple[str, str] | None = None
    fingerprint: str = ""
    begun_at: float = 0.0


class _ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, allow: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.allow = allow


def _describe(value: Any) -> str:
    if isinstance(value, HugeNumber):
        return value.describe()
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction or exponent"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    return type(value).__name__


def _check_fields(
    body: Mapping[str, Any] | None,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
) -> Mapping[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise _ApiError(400, "invalid_body", f"body: must be a JSON object, got {_describe(body)}")
    allowed = _allowed(required, optional)
    for name in body:
        if not isinstance(name, str) or name not in allowed:
            names = ", ".join(sorted(allowed)) or "none"
            raise _ApiError(
                400, "unknown_field", f"{str(name)[:64]!r}: unknown field (allowed: {names})"
            )
    for name in required:
        if name not in body:
            raise _ApiError(400, "missing_field", f"{name}: required field is missing")
    return body


@functools.cache
def _allowed(required: tuple[str, ...], optional: tuple[str, ...]) -> frozenset[str]:
    return frozenset(required) | frozenset(optional)


def _amount(body: Mapping[str, Any], name: str = "amount") -> int:
    value = body[name]
    if isinstance(value, HugeNumber):
        raise _ApiError(
            400,
            "invalid_field",
            f"{name}: must be between 1 and {MAX_AMOUNT} minor units, got {value.describe()}",
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise _ApiError(
            400,
            "invalid_field",
            f"{name}: must be an integer number of minor units, got {_describe(value)}",
        )
    if not 1 <= value <= MAX_AMOUNT:
        raise _ApiError(
            400, "invalid_field", f"{name}: must be between 1 and {MAX_AMOUNT} minor units"
        )
    return value


def _ident(body: Mapping[str, Any], name: str) -> str:
    value = body[name]
    if not isinstance(value, str):
        raise _ApiError(400, "invalid_field", f"{name}: must be a string, got {_describe(value)}")
    if not _ID_RE.fullmatch(value):
        raise _ApiError(
            400, "invalid_field", f"{name}: must be 1-64 characters of A-Z a-z 0-9 . _ : -"
        )
    return value


def _currency(body: Mapping[str, Any]) -> str:
    value = body["currency"]
    if not isinstance(value, str):
        raise _ApiError(400, "invalid_field", f"currency: must be a string, got {_describe(value)}")
    if not _CURRENCY_RE.fullmatch(value):
        raise _ApiError(
            400, "invalid_field", "currency: must be an ISO 4217 code of 3 uppercase letters"
        )
    return value


def _fingerprint(method: str, path: str, body: Mapping[str, Any] | None) -> str:
    """What a key's request is compared by: method, path and the body in canonical form.

    Plain bodies are canonical JSON (sorted keys, no spaces). Anything
    ``json.dumps`` cannot do -- nesting deeper than the interpreter's recursion
    limit, circular structures, mixed key types, integers too long to print --
    goes through :func:`_canonical`, which never recurses; its text is marked
    with a leading ``~`` so it never equals a plain JSON text.
    """
    try:
        text = _CANONICAL_JSON.encode(body)
    except (TypeError, ValueError, RecursionError):
        text = "~" + _canonical(body)
    return f"{method} {path} {text}"


#: ``json.dumps(body, sort_keys=True, separators=(",", ":"), default=repr)``, built once
#: (``json.dumps`` builds a new encoder on every call with non-default options).
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=repr)

_TEXT, _VALUE, _LEAVE = 0, 1, 2


def _scalar(value: Any) -> str:
    if value is None or isinstance(value, bool | str | float):
        return json.dumps(value)
    if isinstance(value, int):
        # decimal conversion is refused past ~4300 digits; hex never is
        return str(value) if value.bit_length() < 10_000 else f"0x{value:x}"
    try:
        text = repr(value)
    except (RecursionError, ValueError):
        text = f"<{type(value).__qualname__} at {id(value):#x}>"
    return json.dumps(f"{type(value).__qualname__}:{text}")


def _canonical(value: Any) -> str:
    """Canonical JSON-like text of ``value`` with an explicit stack (no recursion).

    Mappings are written with keys sorted by their text; a container met again
    inside itself is written as ``"<cycle>"``.
    """
    out: list[str] = []
    open_ids: set[int] = set()
    stack: list[tuple[int, Any]] = [(_VALUE, value)]
    while stack:
        kind, item = stack.pop()
        if kind == _TEXT:
            out.append(item)
            continue
        if kind == _LEAVE:
            open_ids.discard(item)
            continue
        if not isinstance(item, Mapping | list | tuple):
            out.append(_scalar(item))
            continue
        if id(item) in open_ids:
            out.append('"<cycle>"')
            continue
        open_ids.add(id(item))
        children: list[tuple[str, Any]]
        if isinstance(item, Mapping):
            opener, closer = "{", "}"
            children = sorted(((_scalar(k) + ":", v) for k, v in item.items()), key=_first)
        else:
            opener, closer = "[", "]"
            children = [("", v) for v in item]
        stack.append((_LEAVE, id(item)))
        stack.append((_TEXT, closer))
        for index in range(len(children) - 1, -1, -1):
            prefix, child = children[index]
            stack.append((_VALUE, child))
            stack.append((_TEXT, ("," if index else "") + prefix))
        stack.append((_TEXT, opener))
    return "".join(out)


def _first(entry: tuple[str, Any]) -> str:
    return entry[0]


class Ledger:
    """Payments, refunds and idempotency records of the reference provider.

    ``rng`` is the only source of randomness. ``payer`` decides what happens to
    each payment. ``require_idempotency_key=False`` lets creates without a key
    through (each one a new payment), to model naive clients.
    ``idempotency_ttl_s`` is how long a stored response is replayed (the
    contract promises at least 24 hours). ``poll_delay_ms`` is the
    ``pollDelayInMs`` put on payments and refunds unless a call overrides it.
    ``reservation_expiry_s`` is how long a reservation that is never captured
    holds the money: then the payment becomes ``expired`` (no money taken) and
    can no longer be captured or refunded (``None``: reservations never expire).
    """

    def __init__(
        self,
        rng: random.Random,
        payer: PayerModel | None = None,
        *,
        require_idempotency_key: bool = True,
        idempotency_ttl_s: float = 86_400.0,
        poll_delay_ms: int = 1000,
        reservation_expiry_s: float | None = DEFAULT_RESERVATION_EXPIRY_S,
    ) -> None:
        if reservation_expiry_s is not None and not reservation_expiry_s > 0:
            raise ValueError(
                f"reservation_expiry_s must be positive or None, got {reservation_expiry_s!r}"
            )
        if idempotency_ttl_s <= 0:
            raise ValueError(f"idempotency_ttl_s must be positive, got {idempotency_ttl_s!r}")
        if poll_delay_ms < 0:
            raise ValueError(f"poll_delay_ms must be >= 0, got {poll_delay_ms!r}")
        self.rng = rng
        self.payer = payer if payer is not None else PayerModel()
        self.require_idempotency_key = require_idempotency_key
        self.idempotency_ttl_s = idempotency_ttl_s
        self.reservation_expiry_s = reservation_expiry_s
        self.poll_delay_ms = poll_delay_ms
        self._payments: dict[str, _Payment] = {}
        self._by_order: dict[tuple[str, str], list[str]] = {}
        self._pos_latest: dict[tuple[str, str], str] = {}
        self._refunds: dict[str, _Refund] = {}
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()
        self._in_flight: dict[tuple[str, str], int] = {}
        self._open: set[int] = set()
        self._serial = 0
        self._last_now = 0.0

    def __repr__(self) -> str:
        return (
            f"Ledger(payments={len(self._payments)}, refunds={len(self._refunds)}, "
            f"idempotency_records={len(self._records)}, in_flight={len(self._in_flight)})"
        )

    # ------------------------------------------------------------------ ids
    def _new_id(self) -> str:
        # The text of ``uuid.UUID(int=self.rng.getrandbits(128), version=4)``, without the object.
        value = self.rng.getrandbits(128) & _UUID_CLEAR | _UUID_SET
        h = f"{value:032x}"
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def _respond(
        self, status: int, body: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> Response:
        correlation_id = self._new_id()
        body["correlationId"] = correlation_id
        all_headers = {CORRELATION_HEADER: correlation_id}
        if headers:
            all_headers.update(headers)
        return Response(status, body, all_headers)

    def _error(self, exc: _ApiError, headers: Mapping[str, str] | None = None) -> Response:
        return self._respond(exc.status, {"code": exc.code, "message": exc.message}, headers)

    # ------------------------------------------------------------- routing
    def _route(self, request: Request) -> tuple[str, dict[str, Any], bool]:
        """Return ``(operation, params, needs_key)`` or raise :class:`_ApiError`."""
        method = request.method.upper() if isinstance(request.method, str) else ""
        path, _, query = request.path.partition("?")
        parts = path.split("/")
        params: dict[str, Any] = {}
        allowed: tuple[str, ...]
        if path == _PAYMENTS:
            allowed = ("GET", "POST")
            if method == "POST":
                self._no_query(query)
                return "create", params, True
            if method == "GET":
                params["order_id"] = self._order_query(query)
                return "lookup", params, False
        elif path == _REFUNDS:
            allowed = ("POST",)
            if method == "POST":
                self._no_query(query)
                return "refund", params, True
        elif len(parts) == 4 and path.startswith(_PAYMENTS + "/") and parts[3]:
            allowed = ("GET",)
            params["payment_id"] = parts[3]
            if method == "GET":
                self._no_query(query)
                return "get", params, False
        elif (
            len(parts) == 5
            and path.startswith(_PAYMENTS + "/")
            and parts[3]
            and parts[4]
            in (
                "cancel",
                "capture",
            )
        ):
            allowed = ("POST",)
            params["payment_id"] = parts[3]
            if method == "POST":
                self._no_query(query)
                return parts[4], params, False
        elif len(parts) == 4 and path.startswith(_REFUNDS + "/") and parts[3]:
            allowed = ("GET",)
            params["refund_id"] = parts[3]
            if method == "GET":
                self._no_query(query)
                return "get_refund", params, False
        else:
            raise _ApiError(404, "not_found", f"path: no endpoint at {path[:100]!r}")
        raise _ApiError(
            405,
            "method_not_allowed",
            f"method: {method[:16]!r} not allowed on this path (allowed: {', '.join(allowed)})",
            ", ".join(allowed),
        )

    @staticmethod
    def _parse_query(query: str) -> list[tuple[str, str]]:
        if not query:
            return []
        try:
            return parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError as exc:
            raise _ApiError(400, "invalid_query", "query: malformed query string") from exc

    def _no_query(self, query: str) -> None:
        pairs = self._parse_query(query)
        if pairs:
            raise _ApiError(400, "invalid_query", f"{pairs[0][0][:64]!r}: unknown query parameter")

    def _order_query(self, query: str) -> str:
        pairs = self._parse_query(query)
        for name, _ in pairs:
            if name != "orderId":
                raise _ApiError(400, "invalid_query", f"{name[:64]!r}: unknown query parameter")
        if not pairs:
            raise _ApiError(400, "missing_field", "orderId: required query parameter is missing")
        if len(pairs) > 1:
            raise _ApiError(400, "invalid_query", "orderId: given more than once")
        return _ident({"orderId": pairs[0][1]}, "orderId")

    # ---------------------------------------------------------- validation
    @staticmethod
    def _validate(operation: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        if operation == "create":
            checked = _check_fields(body, ("orderId", "amount", "currency"), ("posId",))
            pos = checked.get("posId")
            return {
                "order_id": _ident(checked, "orderId"),
                "amount": _amount(checked),
                "currency": _currency(checked),
                "pos_id": None if pos is None else _ident(checked, "posId"),
            }
        if operation == "refund":
            checked = _check_fields(body, ("paymentId", "amount", "reference"))
            return {
                "payment_id": _ident(checked, "paymentId"),
                "amount": _amount(checked),
                "reference": _ident(checked, "reference"),
            }
        if operation == "capture":
            checked = _check_fields(body, (), ("amount",))
            return {"amount": _amount(checked) if "amount" in checked else None}
        if operation == "cancel":
            _check_fields(body, ())
        return {}

    # ---------------------------------------------------------------- time
    def _settle(self, payment: _Payment, now: float) -> _Payment:
        if payment.state == "initiated" and now >= payment.decide_at:
            payment.state = payment.decision
            payment.updated_at = payment.decide_at
        if payment.state == "reserved" and self.reservation_expiry_s is not None:
            expires_at = payment.decide_at + self.reservation_expiry_s
            if now >= expires_at:
                payment.state = "expired"
                payment.updated_at = expires_at
        return payment

    def _reserved_at(self, payment: _Payment) -> float | None:
        """When the payer's money was first held (None if it never was)."""
        if payment.decision != "reserved" or payment.state == "initiated":
            return None
        if payment.state == "cancelled":
            return None  # cancelled before the payer decided
        return payment.decide_at

    def _expires_at(self, payment: _Payment) -> float | None:
        """When an uncaptured reservation is (or was) released by the provider."""
        reserved_at = self._reserved_at(payment)
        if reserved_at is None or payment.captured_at is not None:
            return None
        if self.reservation_expiry_s is None:
            return None
        return reserved_at + self.reservation_expiry_s

    def _forget_old_records(self, now: float) -> None:
        records = self._records
        while records:
            scope, record = next(iter(records.items()))
            if record.stored_at + self.idempotency_ttl_s > now:
                break
            del records[scope]

    # ----------------------------------------------------------- two phases
    def begin(self, client_id: str, request: Request, now: float) -> Ticket | Response:
        """Validate ``request`` and reserve its idempotency key (see module docs).

        Returns a :class:`Response` when the answer is already known (errors,
        replays, key conflicts) and a :class:`Ticket` to :meth:`commit` otherwise.
        """
        self._last_now = max(self._last_now, now)
        try:
            operation, params, needs_key = self._route(request)
        except _ApiError as exc:
            extra = {"allow": exc.allow} if exc.allow else None
            return self._error(exc, extra)
        scope: tuple[str, str] | None = None
        fingerprint = ""
        key = request.idempotency_key
        if needs_key:
            if key is None:
                if self.require_idempotency_key:
                    return self._error(
                        _ApiError(
                            400,
                            "idempotency_key_missing",
                            "X-MobilePay-Idempotency-Key: required header is missing",
                        )
                    )
            elif not isinstance(key, str) or not _KEY_RE.fullmatch(key):
                return self._error(
                    _ApiError(
                        400,
                        "invalid_idempotency_key",
                        "X-MobilePay-Idempotency-Key: must be 1-64 characters of A-Z a-z 0-9 - _",
                    )
                )
            else:
                scope = (client_id, key)
                fingerprint = _fingerprint(request.method.upper(), request.path, request.body)
                self._forget_old_records(now)
                if scope in self._in_flight:
                    return self._error(
                        _ApiError(
                            409,
                            "request_in_progress",
                            "X-MobilePay-Idempotency-Key: a request with this key is "
                            "still being processed",
                        )
                    )
                record = self._records.get(scope)
                if record is not None:
                    if record.fingerprint != fingerprint:
                        return self._error(
                            _ApiError(
                                422,
                                "idempotency_key_reused",
                                "X-MobilePay-Idempotency-Key: already used for a different request",
                            )
                        )
                    headers = dict(record.response.headers)
                    headers["idempotent-replayed"] = "true"
                    return Response(record.response.status, dict(record.response.body), headers)
        try:
            params.update(self._validate(operation, request.body))
        except _ApiError as exc:
            return self._error(exc)
        self._serial += 1
        ticket = Ticket(self._serial, client_id, operation, params, scope, fingerprint, now)
        self._open.add(ticket.serial)
        if scope is not None:
            self._in_flight[scope] = ticket.serial
        return ticket

    def commit(self, ticket: Ticket, now: float, *, poll_delay_ms: int | None = None) -> Response:
        """Apply ``ticket`` at time ``now`` and return the response.

        Raises :class:`ValueError` if the ticket was already committed or abandoned.
        """
        if ticket.serial not in self._open:
            raise ValueError(f"ticket {ticket.serial} is not open (committed or abandoned)")
        self._open.discard(ticket.serial)
        self._last_now = max(self._last_now, now)
        delay = self.poll_delay_ms if poll_delay_ms is None else poll_delay_ms
        try:
            response = self._apply(ticket, now, delay)
        except _ApiError as exc:
            response = self._error(exc)
        if ticket.scope is not None:
            self._in_flight.pop(ticket.scope, None)
            self._records[ticket.scope] = _Record(ticket.fingerprint, response, now)
            self._records.move_to_end(ticket.scope)
        return response

    def abandon(self, ticket: Ticket) -> None:
        """Drop ``ticket`` without applying it; its idempotency key is released."""
        if ticket.serial in self._open:
            self._open.discard(ticket.serial)
            if ticket.scope is not None and self._in_flight.get(ticket.scope) == ticket.serial:
                del self._in_flight[ticket.scope]

    def handle(
        self, client_id: str, request: Request, now: float, *, poll_delay_ms: int | None = None
    ) -> Response:
        """:meth:`begin` and, if needed, :meth:`commit` at the same instant."""
        result = self.begin(client_id, request, now)
        if isinstance(result, Response):
            return result
        return self.commit(result, now, poll_delay_ms=poll_delay_ms)

    def in_flight(self) -> int:
        """Number of keyed requests begun and not yet committed or abandoned."""
        return len(self._in_flight)

    # ------------------------------------------------------------- actions
    def _payment(self, client_id: str, payment_id: str, now: float) -> _Payment:
        payment = self._payments.get(payment_id)
        if payment is None or payment.client_id != client_id:
            raise _ApiError(404, "payment_not_found", f"paymentId: no payment {payment_id[:64]!r}")
        return self._settle(payment, now)

    def _apply(self, ticket: Ticket, now: float, delay: int) -> Response:
        p = ticket.params
        client = ticket.client_id
        op = ticket.operation
        if op == "create":
            return self._create(client, p, now, delay)
        if op == "get":
            payment = self._payment(client, p["payment_id"], now)
            return self._respond(200, self._payment_body(payment, delay))
        if op == "lookup":
            ids = self._by_order.get((client, p["order_id"]), [])
            bodies = [self._payment_body(self._settle(self._payments[i], now), delay) for i in ids]
            return self._respond(200, {"payments": bodies})
        if op == "cancel":
            payment = self._payment(client, p["payment_id"], now)
            if payment.state == "initiated":
                payment.state = "cancelled"
                payment.updated_at = now
            elif payment.state != "cancelled":
                raise _ApiError(
                    409,
                    "payment_not_cancellable",
                    f"paymentId: payment is {payment.state} and can no longer be cancelled",
                )
            return self._respond(200, self._payment_body(payment, delay))
        if op == "capture":
            payment = self._payment(client, p["payment_id"], now)
            amount = payment.amount if p["amount"] is None else p["amount"]
            if payment.state == "reserved":
                if amount > payment.amount:
                    raise _ApiError(
                        400, "invalid_field", "amount: must not exceed the reserved amount"
                    )
                payment.state = "captured"
                payment.captured_amount = amount
                payment.updated_at = now
                payment.captured_at = now
            elif payment.state != "captured":
                raise _ApiError(
                    409,
                    "payment_not_reserved",
                    f"paymentId: payment is {payment.state}, only a reserved payment "
                    "can be captured",
                )
            return self._respond(200, self._payment_body(payment, delay))
        if op == "refund":
            return self._refund(client, p, now, delay)
        if op == "get_refund":
            refund = self._refunds.get(p["refund_id"])
            if refund is None or refund.client_id != client:
                raise _ApiError(
                    404, "refund_not_found", f"refundId: no refund {p['refund_id'][:64]!r}"
                )
            return self._respond(200, self._refund_body(refund, delay))
        raise AssertionError(f"unknown operation {op!r}")  # pragma: no cover

    def _create(self, client: str, p: Mapping[str, Any], now: float, delay: int) -> Response:
        pos_id: str | None = p["pos_id"]
        if pos_id is not None:
            latest = self._pos_latest.get((client, pos_id))
            active = latest is not None and self._settle(self._payments[latest], now)
            if active and active.state == "initiated":
                raise _ApiError(
                    409,
                    "active_payment_on_pos",
                    f"posId: point of sale {pos_id!r} already has an active payment",
                )
        payment_id = self._new_id()
        decide_at, decision = self.payer.draw(self.rng, now)
        payment = _Payment(
            payment_id=payment_id,
            client_id=client,
            order_id=p["order_id"],
            amount=p["amount"],
            currency=p["currency"],
            pos_id=pos_id,
            created_at=now,
            decide_at=decide_at,
            decision=decision,
            updated_at=now,
        )
        self._payments[payment_id] = payment
        self._by_order.setdefault((client, payment.order_id), []).append(payment_id)
        if pos_id is not None:
            self._pos_latest[(client, pos_id)] = payment_id
        self._settle(payment, now)
        return self._respond(
            201, self._payment_body(payment, delay), {"location": f"{_PAYMENTS}/{payment_id}"}
        )

    def _refund(self, client: str, p: Mapping[str, Any], now: float, delay: int) -> Response:
        payment = self._payment(client, p["payment_id"], now)
        if payment.state not in MONEY_TAKEN_STATES:
            raise _ApiError(
                409,
                "payment_not_refundable",
                f"paymentId: payment is {payment.state}, only a reserved or captured "
                "payment can be refunded",
            )
        limit = payment.captured_amount if payment.state == "captured" else payment.amount
        if payment.refunded_amount + p["amount"] > limit:
            raise _ApiError(
                409,
                "refund_exceeds_payment",
                f"amount: refunds would total {payment.refunded_amount + p['amount']}, "
                f"more than the {limit} taken",
            )
        refund = _Refund(
            refund_id=self._new_id(),
            client_id=client,
            payment_id=payment.payment_id,
            amount=p["amount"],
            reference=p["reference"],
            created_at=now,
        )
        self._refunds[refund.refund_id] = refund
        payment.refunded_amount += refund.amount
        return self._respond(
            201, self._refund_body(refund, delay), {"location": f"{_REFUNDS}/{refund.refund_id}"}
        )

    # --------------------------------------------------------------- views
    @staticmethod
    def _payment_body(payment: _Payment, delay: int) -> dict[str, Any]:
        return {
            "paymentId": payment.payment_id,
            "orderId": payment.order_id,
            "amount": payment.amount,
            "currency": payment.currency,
            "posId": payment.pos_id,
            "state": payment.state,
            "pollDelayInMs": delay,
            "refundedAmount": payment.refunded_amount,
        }

    @staticmethod
    def _refund_body(refund: _Refund, delay: int) -> dict[str, Any]:
        return {
            "refundId": refund.refund_id,
            "paymentId": refund.payment_id,
            "amount": refund.amount,
            "reference": refund.reference,
            "state": refund.state,
            "pollDelayInMs": delay,
        }

    def snapshot(self, now: float | None = None) -> dict[str, list[dict[str, Any]]]:
        """The ground truth: every payment and refund, settled at ``now``.

        ``now`` defaults to the latest time the ledger has seen. Payments carry
        ``paymentId orderId amount state`` (and ``clientId currency posId
        capturedAmount refundedAmount createdAt``, plus ``reservedAt`` -- when the
        payer's money was first held, ``capturedAt`` and ``expiresAt`` -- when an
        uncaptured reservation is released; each ``None`` when it does not apply),
        refunds ``refundId paymentId amount state`` (and ``clientId reference
        createdAt``).
        """
        at = self._last_now if now is None else now
        payments = [
            {
                "paymentId": p.payment_id,
                "orderId": p.order_id,
                "amount": p.amount,
                "state": self._settle(p, at).state,
                "clientId": p.client_id,
                "currency": p.currency,
                "posId": p.pos_id,
                "capturedAmount": p.captured_amount,
                "refundedAmount": p.refunded_amount,
                "createdAt": p.created_at,
                "reservedAt": self._reserved_at(p),
                "capturedAt": p.captured_at,
                "expiresAt": self._expires_at(p),
            }
            for p in self._payments.values()
        ]
        refunds = [
            {
                "refundId": r.refund_id,
                "paymentId": r.payment_id,
                "amount": r.amount,
                "state": r.state,
                "clientId": r.client_id,
                "reference": r.reference,
                "createdAt": r.created_at,
            }
            for r in self._refunds.values()
        ]
        return {"payments": payments, "refunds": refunds}
