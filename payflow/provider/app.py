"""The reference provider as a Starlette ASGI app: the wire around the one provider pipeline.

Rule: this module reads and writes HTTP and waits; what happens to a request is
decided by :class:`payflow.provider._pipeline.Pipeline`, the same object the SimPy
model (:mod:`payflow.sim._provider`) drives. Each API request is checked on the wire
(auth, client version, body size and JSON), then goes through the pipeline's steps
under the faults of the moment (:class:`~payflow.provider.faults.Faults`):

1. ``throttle`` -- answered 429 with ``Retry-After`` at once, never processed;
2. queue for one of ``capacity`` slots;
3. ``ledger.begin`` (the idempotency key is now *in flight*), then the latency
   before commit;
4. ``reset`` -- the connection is closed without an answer and nothing happens;
   ``error_before`` -- 503, nothing happens;
5. ``ledger.commit``, then the latency after commit;
6. ``error_after`` -- 503 although the change was made; ``lost`` -- no answer:
   the connection is held until the client gives up (or ``lost_hold_s`` real
   seconds pass, then it is closed); otherwise the ledger's response -- or,
   if the draw has a :class:`~payflow.provider.faults.Mangle`, a misbehaving
   version of it (:func:`~payflow.provider.misbehaviour.wire_reply`: garbled,
   truncated, wrong shape, foreign, unknown state, 409, odd ``pollDelayInMs``),
   possibly trickled a few bytes at a time over ``trickle_s``.

Time is simulated: ``now = day_offset_s + elapsed_real_seconds * time_scale``,
and every sleep is divided by ``time_scale``. All randomness comes from
generators seeded with ``seed``.

Every answer, errors included, is JSON; error bodies are ``{"code", "message",
"correlationId"}``. Tokens are compared with :func:`hmac.compare_digest` and
never appear in logs, reprs or messages.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import math
import random
import re
import secrets
import time
import urllib.parse
import uuid
from collections.abc import Callable, Collection, Mapping
from http import HTTPStatus
from typing import Any, Final

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as StarletteRequest
from starlette.responses import JSONResponse
from starlette.responses import Response as StarletteResponse
from starlette.routing import Route
from starlette.types import Message, Receive, Scope, Send

from payflow.core._api import (
    CLIENT_ID_HEADER,
    CLIENT_VERSION_HEADER,
    CORRELATION_HEADER,
    IDEMPOTENCY_HEADER,
)
from payflow.core.messages import Request
from payflow.provider._pipeline import ANSWER, SHED, THROTTLE, Capacity, Pipeline
from payflow.provider.faults import FaultProfile, Faults
from payflow.provider.ledger import HugeNumber, Ledger, PayerModel, error_body
from payflow.provider.misbehaviour import WireReply, wire_reply

__all__ = [
    "INSPECT_PATH",
    "MAX_BODY_BYTES",
    "MAX_ISSUED_TOKENS",
    "MAX_JSON_DEPTH",
    "TOKEN_PATH",
    "ProviderState",
    "create_app",
]

#: Path of the inspection endpoint (ground truth for tests and notebooks).
INSPECT_PATH: Final = "/_payflow/ledger"
#: Path of the OAuth2 client-credentials token endpoint.
TOKEN_PATH: Final = "/token"
#: Most access tokens kept at once (the oldest are forgotten first).
MAX_ISSUED_TOKENS: Final = 10_000
#: Largest request body accepted; larger ones get 413.
MAX_BODY_BYTES: Final = 64 * 1024
#: Deepest JSON nesting accepted (the body object is level 1); deeper gets 400.
MAX_JSON_DEPTH: Final = 32
#: A trickled answer is written in about one piece per this many real seconds
#: (at most one piece per byte).
_TRICKLE_STEP_S: Final = 0.02
#: Integer literals longer than this (sign included) are kept as a HugeNumber,
#: not converted: no field takes one, and Python refuses past 4300 digits.
_MAX_INT_CHARS: Final = 64

_log = logging.getLogger("payflow.provider")

_VERSION_RE = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
_CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._@-]{1,128}")
_IDEMPOTENCY = IDEMPOTENCY_HEADER.lower().encode("latin-1")
_CLIENT_ID = CLIENT_ID_HEADER.lower().encode("latin-1")
_CLIENT_VERSION = CLIENT_VERSION_HEADER.lower().encode("latin-1")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_TRANSPORT_KEY = "payflow.transport"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_int(text: str) -> int | HugeNumber:
    return int(text) if len(text) <= _MAX_INT_CHARS else HugeNumber.of(text)


def _too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if JSON ``value`` nests containers more than ``limit`` levels (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        for child in children:
            if isinstance(child, dict | list):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False


class _Secret:
    """A token that never shows itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value.encode("utf-8")

    def matches(self, candidate: bytes) -> bool:
        return hmac.compare_digest(self._value, candidate)

    def __repr__(self) -> str:
        return "<secret>"


_DUMMY = _Secret("payflow-no-such-client-" + "x" * 24)


def _finish(work: asyncio.Future[bool]) -> None:
    if not work.done():
        work.set_result(True)


def _wake(future: asyncio.Future[bool]) -> bool:
    """Hand a slot of the pipeline's :class:`Capacity` to a waiting request; False
    for one whose task was cancelled meanwhile (the slot goes to the next)."""
    if future.done():
        return False
    future.set_result(True)
    return True


async def _acquire(capacity: Capacity[asyncio.Future[bool]], clock: Callable[[], float]) -> bool:
    """Wait for a slot: True once taken, False if the capacity was closed."""
    if capacity.try_enter():
        return True
    if capacity.closed:
        return False
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    capacity.wait(future, clock())
    try:
        return await future
    except asyncio.CancelledError:
        if future.done() and not future.cancelled():
            if future.result():
                capacity.leave(clock())  # we were handed a slot we will not use
        else:  # still queued, or popped (and skipped) by a leave meanwhile
            capacity.withdraw(future, clock())
        raise


def _close(capacity: Capacity[asyncio.Future[bool]], now: float) -> None:
    """Refuse every waiter now and every request that would have to wait later."""
    for future in capacity.close(now):
        if not future.done():
            future.set_result(False)


class ProviderState:
    """Everything the app shares between requests; available as ``app.state.provider``.

    ``ledger`` is the :class:`Ledger`; :meth:`now` the simulated clock.
    """

    def __init__(
        self,
        *,
        clients: Mapping[str, str],
        faults: FaultProfile | None,
        time_scale: float,
        inspect_token: str | None,
        seed: int,
        day_offset_s: float,
        payer: PayerModel | None,
        require_idempotency_key: bool,
        read_only_clients: Collection[str],
        lost_hold_s: float,
        poll_delay_ms: int,
        max_body_bytes: int,
        token_ttl: float | None = None,
    ) -> None:
        if not math.isfinite(time_scale) or time_scale <= 0:
            raise ValueError(f"time_scale: must be a positive number, got {time_scale!r}")
        if token_ttl is not None and not (math.isfinite(token_ttl) and token_ttl > 0):
            raise ValueError(f"token_ttl: must be a positive number of seconds, got {token_ttl!r}")
        self.token_ttl = token_ttl
        # sha256(access token) -> (client id, real monotonic expiry or None)
        self._issued: dict[bytes, tuple[str, float | None]] = {}
        if not clients:
            raise ValueError("clients: at least one client id and token is required")
        self._clients: dict[str, _Secret] = {}
        for client_id, token in clients.items():
            if not isinstance(client_id, str) or not _CLIENT_ID_RE.fullmatch(client_id):
                raise ValueError(
                    "clients: a client id must be 1-128 characters of A-Z a-z 0-9 . _ @ -"
                )
            if not isinstance(token, str) or not token or not token.isprintable():
                raise ValueError(f"clients: the token of {client_id!r} is empty or not printable")
            self._clients[client_id] = _Secret(token)
        unknown = set(read_only_clients) - set(clients)
        if unknown:
            raise ValueError(f"read_only_clients: not configured clients: {sorted(unknown)}")
        if inspect_token is not None and not inspect_token:
            raise ValueError("inspect_token: must not be empty (use None to disable)")
        self._inspect = None if inspect_token is None else _Secret(inspect_token)
        self.read_only_clients = frozenset(read_only_clients)
        self.faults = faults
        self.time_scale = float(time_scale)
        self.day_offset_s = float(day_offset_s)
        self.lost_hold_s = lost_hold_s
        self.max_body_bytes = max_body_bytes
        self.ledger = Ledger(
            random.Random(f"{seed}:ledger"),
            payer,
            require_idempotency_key=require_idempotency_key,
            poll_delay_ms=poll_delay_ms,
        )
        self.fault_rng = random.Random(f"{seed}:faults")
        self._id_rng = random.Random(f"{seed}:server")
        # The simulated clock is exact here (a few requests a second), so the
        # profile is looked up at each request's own time (fault_step_s=0).
        self.pipeline: Pipeline[asyncio.Future[bool]] = Pipeline(
            self.ledger, faults, self.fault_rng, _wake, time_scale=time_scale, start=day_offset_s
        )
        self.capacity = self.pipeline.capacity
        self._t0 = time.monotonic()
        self._stopping: asyncio.Event | None = None
        self._working: set[asyncio.Future[bool]] = set()  # requests in their latency
        self.shutting_down = False

    @property
    def lost(self) -> int:
        """Responses withheld after commit."""
        return self.pipeline.stats.lost

    @property
    def resets(self) -> int:
        """Connections reset before commit."""
        return self.pipeline.stats.resets

    @property
    def misbehaved(self) -> int:
        """Answers mangled or trickled (odd ``Retry-After`` included)."""
        return self.pipeline.stats.misbehaved

    def __repr__(self) -> str:
        return (
            f"ProviderState(clients={sorted(self._clients)}, faults={self.faults!r}, "
            f"time_scale={self.time_scale}, inspect={'on' if self._inspect else 'off'})"
        )

    def now(self) -> float:
        """Simulated seconds since midnight of day 0."""
        return self.day_offset_s + (time.monotonic() - self._t0) * self.time_scale

    def scaled_poll_delay(self, base_ms: int) -> int:
        """``pollDelayInMs`` in real time (see :meth:`Pipeline.scaled_poll_delay`)."""
        return self.pipeline.scaled_poll_delay(base_ms)

    def faults_now(self, now: float) -> Faults | None:
        """The faults at simulated time ``now`` (None without a profile)."""
        return self.pipeline.faults_at(now)

    def new_correlation_id(self) -> str:
        """A correlation id for answers the ledger does not make (auth, JSON, faults)."""
        return str(uuid.UUID(int=self._id_rng.getrandbits(128), version=4))

    @property
    def stopping(self) -> asyncio.Event:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping

    def release_held(self) -> None:
        """Stop holding lost responses (call on the server's loop): connections held
        for them are closed now, and later ones are not held."""
        self.stopping.set()

    def shut_down(self) -> None:
        """Wind down quickly (call on the server's loop, before stopping the server):
        release held connections; requests still before their change get a 503
        "shutting down" and change nothing, those after it answer at once, and
        queued ones are refused with a 503. Nothing is left for uvicorn to cancel."""
        self.release_held()
        self.shutting_down = True
        for work in self._working:
            if not work.done():
                work.set_result(False)
        _close(self.capacity, self.now())

    async def work(self, seconds: float) -> bool:
        """A request's latency (``asyncio.sleep``); False if :meth:`shut_down` cut it short."""
        if self.shutting_down:
            return False
        loop = asyncio.get_running_loop()
        work: asyncio.Future[bool] = loop.create_future()
        timer = loop.call_later(seconds, _finish, work)
        self._working.add(work)
        try:
            return await work
        finally:
            self._working.discard(work)
            timer.cancel()

    def authenticate(self, client_id: str | None, authorization: bytes | None) -> bool:
        """Whether the bearer token in ``authorization`` lets ``client_id`` call."""
        return self.check_bearer(client_id, authorization) == "ok"

    def check_bearer(self, client_id: str | None, authorization: bytes | None) -> str:
        """ "ok", "expired" (an access token this provider issued, past its lifetime)
        or "invalid".

        Without a token lifetime the client's configured token is accepted as
        well as issued access tokens; with one (``token_ttl``) only access
        tokens from ``POST /token``, for ``token_ttl`` real seconds.
        """
        secret = self._clients.get(client_id) if client_id is not None else None
        token = b""
        if authorization is not None:
            scheme, _, rest = authorization.partition(b" ")
            if scheme.lower() == b"bearer":
                token = rest.strip()
        if not token or secret is None:
            _DUMMY.matches(token)
            return "invalid"
        issued = self._issued.get(hashlib.sha256(token).digest())
        if issued is not None:
            owner, expires = issued
            if owner != client_id:
                return "invalid"
            return "ok" if expires is None or time.monotonic() < expires else "expired"
        if self.token_ttl is None and secret.matches(token):
            return "ok"
        return "invalid"

    def issue_token(self, client_id: str, client_secret: str) -> tuple[str, float | None] | None:
        """An access token for a client whose secret (its configured token) is right,
        and its lifetime in seconds; ``None`` if the credentials are wrong."""
        secret = self._clients.get(client_id)
        ok = (secret or _DUMMY).matches(client_secret.encode("utf-8"))
        if not ok or secret is None:
            return None
        now = time.monotonic()
        issued = self._issued
        for key in [k for k, (_, exp) in issued.items() if exp is not None and exp <= now]:
            del issued[key]
        while len(issued) >= MAX_ISSUED_TOKENS:
            del issued[next(iter(issued))]
        token = secrets.token_urlsafe(32)
        ttl = self.token_ttl
        issued[hashlib.sha256(token.encode()).digest()] = (
            client_id, None if ttl is None else now + ttl,
        )  # fmt: skip
        return token, ttl

    def expire_tokens(self) -> int:
        """Make every access token issued so far expired now (for tests); returns how many."""
        now = time.monotonic()
        for key, (owner, _) in list(self._issued.items()):
            self._issued[key] = (owner, now)
        return len(self._issued)

    def inspect_allowed(self, authorization: bytes | None) -> bool | None:
        """None when inspection is disabled, else whether the bearer token is right."""
        if self._inspect is None:
            return None
        token = b""
        if authorization is not None:
            scheme, _, rest = authorization.partition(b" ")
            if scheme.lower() == b"bearer":
                token = rest.strip()
        return self._inspect.matches(token) and bool(token)


async def _send_json(
    send: Send, status: int, body: Mapping[str, Any], headers: Mapping[str, str]
) -> None:
    payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode("latin-1")),
    ]
    raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items())
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


class _ClientGone(Exception):
    """The client disconnected before its request was read: nobody to answer."""


class _BadRequest(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _Api:
    """The raw ASGI endpoint behind every API path."""

    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracked_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked_send)
        except _ClientGone:
            return
        except Exception:
            # A genuine bug: log it (no headers, so no tokens) and answer a well-formed 500.
            _log.exception("internal error handling %s %s", scope.get("method"), scope.get("path"))
            if not started:
                cid = self.state.new_correlation_id()
                await _send_json(
                    send,
                    500,
                    error_body("internal_error", "server: internal error", cid),
                    {CORRELATION_HEADER: cid},
                )

    async def _error(self, send: Send, status: int, code: str, message: str, **extra: str) -> None:
        cid = self.state.new_correlation_id()
        await _send_json(
            send, status, error_body(code, message, cid), {CORRELATION_HEADER: cid, **extra}
        )

    async def _read_body(self, receive: Receive, headers: dict[bytes, bytes]) -> Any:
        limit = self.state.max_body_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                raise _BadRequest(400, "invalid_header", "content-length: not a number")
            if int(declared) > limit:
                raise _BadRequest(413, "payload_too_large", f"body: larger than {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _BadRequest(413, "payload_too_large", f"body: larger than {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if not raw.strip():
            return None
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRequest(400, "invalid_json", "body: not valid UTF-8") from None
        too_deep = f"body: JSON nested more than {MAX_JSON_DEPTH} levels deep"
        try:
            value = json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int)
        except RecursionError:
            raise _BadRequest(400, "invalid_json", too_deep) from None
        except json.JSONDecodeError as exc:
            where = f"line {exc.lineno} column {exc.colno}"
            detail = f"body: not valid JSON ({exc.msg} at {where})"
            raise _BadRequest(400, "invalid_json", detail) from None
        except ValueError as exc:  # NaN, Infinity
            raise _BadRequest(400, "invalid_json", f"body: not valid JSON ({exc})") from None
        if isinstance(value, dict | list) and _too_deep(value):
            raise _BadRequest(400, "invalid_json", too_deep)
        return value

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        raw_client = headers.get(_CLIENT_ID)
        client_id = raw_client.decode("latin-1") if raw_client is not None else None
        if client_id is None:
            return await self._error(
                send, 401, "unauthorized", f"{CLIENT_ID_HEADER}: required header is missing"
            )
        verdict = state.check_bearer(client_id, headers.get(b"authorization"))
        if verdict == "expired":
            return await self._error(
                send,
                401,
                "token_expired",
                "Authorization: the access token has expired; get a new one from POST /token",
                **{"www-authenticate": 'Bearer error="invalid_token"'},
            )
        if verdict != "ok":
            return await self._error(
                send,
                401,
                "unauthorized",
                f"Authorization: bearer token missing or not valid for this {CLIENT_ID_HEADER}",
            )
        version = headers.get(_CLIENT_VERSION)
        if version is None or not _VERSION_RE.fullmatch(version.decode("latin-1")):
            return await self._error(
                send,
                400,
                "invalid_client_version",
                f"{CLIENT_VERSION_HEADER}: required, as Major.Minor.Build (e.g. 2.1.1)",
            )
        method: str = scope["method"]
        if client_id in state.read_only_clients and method not in ("GET", "HEAD"):
            return await self._error(
                send, 403, "forbidden", f"{CLIENT_ID_HEADER}: this client may only read"
            )
        path: str = scope["path"]
        if "?" in path:
            return await self._error(send, 404, "not_found", "path: no such endpoint")
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and b"%2f" in raw_path.partition(b"?")[0].lower():
            # the decoded path would split an id in two (".../x%2Fcancel" is not a cancel)
            return await self._error(
                send, 404, "not_found", "path: no such endpoint (an encoded '/' is not a separator)"
            )
        body: Any = None
        if method in _BODY_METHODS:
            try:
                body = await self._read_body(receive, headers)
            except _BadRequest as exc:
                return await self._error(send, exc.status, exc.code, exc.message)
        query = scope.get("query_string", b"").decode("latin-1")
        raw_key = headers.get(_IDEMPOTENCY)
        request = Request(
            method,
            f"{path}?{query}" if query else path,
            body,
            None if raw_key is None else raw_key.decode("latin-1"),
        )
        await self._serve(scope, receive, send, client_id, request)

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, client_id: str, request: Request
    ) -> None:
        state = self.state
        pipeline = state.pipeline
        job = pipeline.arrive(client_id, request, state.now())
        plan = job.plan
        if plan is ANSWER:  # no fault profile: the ledger answered at once
            answer = job.answer
            assert answer is not None
            return await _send_json(send, answer.status, answer.body, answer.headers)
        if plan is THROTTLE:
            return await self._error(
                send,
                429,
                "too_many_requests",
                "client: too many requests, retry after the Retry-After delay",
                **{"retry-after": job.retry_after},
            )
        if plan is SHED:
            return await self._error(send, 503, "overloaded", "server: queue full, retry later")
        if not await _acquire(pipeline.capacity, state.now):
            return await self._shutting_down(send)
        scale = state.time_scale
        cut = False
        try:
            before = pipeline.start(job, state.now())
            if before > 0 and not await state.work(before / scale):
                cut = True  # shutting down before the change: nothing is made
            else:
                after = pipeline.commit(job, state.now())
                if after:
                    await state.work(after / scale)
        except BaseException:
            pipeline.drop(job, state.now())
            raise
        if cut:
            pipeline.drop(job, state.now())
            return await self._shutting_down(send)
        action = pipeline.finish(job, state.now())
        if action == "reset":
            return await self._drop(scope, receive, hold=False)
        if action == "lost":
            return await self._drop(scope, receive, hold=True)
        if action != "ok":  # error_before / error_after
            return await self._error(
                send, 503, "service_unavailable", "server: temporarily unavailable, retry later"
            )
        answer, mangle = job.answer, job.mangle
        assert answer is not None
        if mangle is None:
            return await _send_json(send, answer.status, answer.body, answer.headers)
        reply = wire_reply(answer, mangle)
        await self._send_wire(scope, receive, send, reply, mangle.trickle_s / scale)

    async def _send_wire(
        self, scope: Scope, receive: Receive, send: Send, reply: WireReply, trickle_s: float
    ) -> None:
        """Send ``reply``; with ``trickle_s`` > 0 (real seconds), a few bytes at a time.

        Trickling writes the whole answer (status line, headers, body, with
        ``connection: close``) straight to the transport in small pieces, then
        closes the connection; without a transport only the body trickles.
        """
        raw: list[tuple[bytes, bytes]] = []
        if reply.content_type is not None:
            raw.append((b"content-type", reply.content_type.encode("latin-1")))
        if reply.status != 204:
            raw.append((b"content-length", str(len(reply.payload)).encode("latin-1")))
        raw.extend((k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers.items())
        transport = scope.get(_TRANSPORT_KEY)
        if trickle_s <= 0 or transport is None:
            await send({"type": "http.response.start", "status": reply.status, "headers": raw})
            if trickle_s <= 0:
                await send({"type": "http.response.body", "body": reply.payload})
                return
            pieces = _pieces(reply.payload, trickle_s)
            gap = trickle_s / len(pieces)
            for i, piece in enumerate(pieces):
                more = i < len(pieces) - 1
                if not await self.state.work(gap):
                    more = False  # shutting down: the rest at once
                    piece = b"".join(pieces[i:])
                await send({"type": "http.response.body", "body": piece, "more_body": more})
                if not more:
                    return
            return
        phrase = HTTPStatus(reply.status).phrase if reply.status in _STATUSES else ""
        head = [f"HTTP/1.1 {reply.status} {phrase}\r\n".encode("latin-1")]
        head.extend(k + b": " + v + b"\r\n" for k, v in raw)
        head.append(b"connection: close\r\n\r\n")
        pieces = _pieces(b"".join(head) + reply.payload, trickle_s)
        gap = trickle_s / max(1, len(pieces) - 1)
        for i, piece in enumerate(pieces):
            if i and not await self.state.work(gap):
                break  # shutting down: the client gets a cut answer (it may have been charged)
            if transport.is_closing():
                break  # the client gave up
            transport.write(piece)
        transport.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_wait_disconnect(receive), timeout=1.0)

    async def _shutting_down(self, send: Send) -> None:
        await self._error(send, 503, "service_unavailable", "server: shutting down, retry later")

    async def _drop(self, scope: Scope, receive: Receive, *, hold: bool) -> None:
        """Answer nothing: hold until the client leaves (``hold``), then close."""
        transport = scope.get(_TRANSPORT_KEY)
        if hold or transport is None:
            waiter = asyncio.ensure_future(_wait_disconnect(receive))
            stopper = asyncio.ensure_future(self.state.stopping.wait())
            try:
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.state.lost_hold_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                stopper.cancel()
            if waiter.done():
                return
            waiter.cancel()
        if transport is not None:
            transport.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_wait_disconnect(receive), timeout=1.0)


_STATUSES: Final = frozenset(s.value for s in HTTPStatus)


def _pieces(data: bytes, seconds: float) -> list[bytes]:
    """``data`` in pieces of a few bytes: about one per ``_TRICKLE_STEP_S``, at most
    one per byte, at least two (when there are two bytes)."""
    count = max(2, min(len(data), math.ceil(seconds / _TRICKLE_STEP_S)))
    size = max(1, math.ceil(len(data) / count))
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


class _Inspect:
    """``GET /_payflow/ledger``: the ledger snapshot, with its own bearer token."""

    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = self.state
        authorization = None
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                authorization = value
                break
        allowed = state.inspect_allowed(authorization)
        cid = state.new_correlation_id()
        headers = {CORRELATION_HEADER: cid}
        if allowed is None:
            body = error_body("not_found", "path: no such endpoint (inspection is disabled)", cid)
            return await _send_json(send, 404, body, headers)
        if not allowed:
            body = error_body("unauthorized", "Authorization: inspection token not valid", cid)
            return await _send_json(send, 401, body, headers)
        if scope["method"] != "GET":
            body = error_body("method_not_allowed", "method: only GET is allowed here", cid)
            return await _send_json(send, 405, body, {**headers, "allow": "GET"})
        # exactly {"payments": [...], "refunds": [...]}; the correlation id is in the header
        await _send_json(send, 200, state.ledger.snapshot(state.now()), headers)


class _Token:
    """``POST /token``: OAuth2 client credentials (RFC 6749 section 4.4).

    The client authenticates with its id and secret (the token configured for
    it) -- HTTP Basic, or ``client_id``/``client_secret`` in a form-encoded or
    JSON body -- with ``grant_type=client_credentials``, and gets
    ``{"access_token", "token_type": "Bearer", "expires_in"}`` (no
    ``expires_in`` without a lifetime). Errors carry OAuth's ``error`` and this
    API's ``code``/``message``/``correlationId``. Not subject to faults.
    """

    def __init__(self, state: ProviderState) -> None:
        self.state = state

    async def _answer(self, send: Send, status: int, error: str, message: str) -> None:
        cid = self.state.new_correlation_id()
        body = {"error": error, **error_body(error, message, cid)}
        headers = {CORRELATION_HEADER: cid, "cache-control": "no-store"}
        if status == 401:
            headers["www-authenticate"] = 'Basic realm="payflow"'
        if status == 405:
            headers["allow"] = "POST"
        await _send_json(send, status, body, headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            return await self._answer(send, 405, "method_not_allowed", "method: only POST")
        headers = {name.lower(): value for name, value in scope["headers"]}
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if len(raw) > 8192:
                return await self._answer(send, 413, "invalid_request", "body: too large")
            if not message.get("more_body", False):
                break
        fields: dict[str, str] = {}
        try:
            text = raw.decode("utf-8")
            if headers.get(b"content-type", b"").startswith(b"application/json"):
                data = json.loads(text) if text.strip() else {}
                if not isinstance(data, dict):
                    raise ValueError("not an object")
                fields = {k: v for k, v in data.items() if isinstance(v, str)}
            else:
                fields = {k: v[0] for k, v in urllib.parse.parse_qs(text).items()}
            basic = headers.get(b"authorization", b"")
            if basic[:6].lower() == b"basic ":
                pair = base64.b64decode(basic[6:].strip(), validate=True).decode("utf-8")
                user, _, password = pair.partition(":")
                fields["client_id"] = urllib.parse.unquote(user)
                fields["client_secret"] = urllib.parse.unquote(password)
        except (ValueError, UnicodeDecodeError):
            return await self._answer(send, 400, "invalid_request", "body: not readable")
        if fields.get("grant_type") != "client_credentials":
            return await self._answer(
                send, 400, "unsupported_grant_type", "grant_type: must be client_credentials"
            )
        client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
        if not client_id or not client_secret:
            return await self._answer(
                send, 401, "invalid_client", "client_id, client_secret: both are required"
            )
        issued = self.state.issue_token(client_id, client_secret)
        if issued is None:
            return await self._answer(
                send, 401, "invalid_client", "client_id, client_secret: not valid"
            )
        token, ttl = issued
        body: dict[str, Any] = {"access_token": token, "token_type": "Bearer"}
        if ttl is not None:
            body["expires_in"] = ttl
        cid = self.state.new_correlation_id()
        await _send_json(send, 200, body, {CORRELATION_HEADER: cid, "cache-control": "no-store"})


class _ProviderApp(Starlette):
    """Starlette, plus the server transport in the scope so faults can drop connections."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            # uvicorn's send is a bound method of its request cycle, which owns the transport
            owner = getattr(send, "__self__", None)
            scope[_TRANSPORT_KEY] = getattr(owner, "transport", None)
        await super().__call__(scope, receive, send)


def create_app(
    clients: Mapping[str, str],
    faults: FaultProfile | None = None,
    time_scale: float = 1.0,
    inspect_token: str | None = None,
    seed: int = 0,
    day_offset_s: float = 0.0,
    *,
    payer: PayerModel | None = None,
    require_idempotency_key: bool = True,
    read_only_clients: Collection[str] = (),
    lost_hold_s: float = 60.0,
    poll_delay_ms: int = 1000,
    max_body_bytes: int = MAX_BODY_BYTES,
    token_ttl: float | None = None,
) -> Starlette:
    """Build the provider app.

    ``clients`` maps client id to bearer token. ``faults`` (None: a perfect
    provider) is applied at simulated time ``day_offset_s + elapsed *
    time_scale``. ``inspect_token`` enables ``GET /_payflow/ledger``.
    ``read_only_clients`` get 403 on anything but GET. ``lost_hold_s`` bounds,
    in real seconds, how long a lost response holds its connection.
    ``POST /token`` issues access tokens (OAuth2 client credentials, the
    client's token as its secret); with ``token_ttl`` they last that many real
    seconds and only they are accepted (an expired one gets 401
    ``token_expired``), without it they never expire and the configured
    tokens are accepted too.
    The shared state is ``app.state.provider`` (a :class:`ProviderState`).
    """
    state = ProviderState(
        clients=clients,
        faults=faults,
        time_scale=time_scale,
        inspect_token=inspect_token,
        seed=seed,
        day_offset_s=day_offset_s,
        payer=payer,
        require_idempotency_key=require_idempotency_key,
        read_only_clients=read_only_clients,
        lost_hold_s=lost_hold_s,
        poll_delay_ms=poll_delay_ms,
        max_body_bytes=max_body_bytes,
        token_ttl=token_ttl,
    )

    async def http_error(request: StarletteRequest, exc: Exception) -> StarletteResponse:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        if status >= 500:
            code = "internal_error"
            _log.error("internal error: %s", type(exc).__name__)
        cid = state.new_correlation_id()
        body = error_body(code, f"request: {code.replace('_', ' ')}", cid)
        return JSONResponse(body, status, headers={CORRELATION_HEADER: cid})

    app = _ProviderApp(
        routes=[
            Route(INSPECT_PATH, _Inspect(state)),
            Route(TOKEN_PATH, _Token(state), methods=None),
            Route("/{path:path}", _Api(state)),
        ],
        exception_handlers={HTTPException: http_error, Exception: http_error},
    )
    app.state.provider = state
    return app
