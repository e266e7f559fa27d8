"""One time limit for a whole HTTP attempt: connect, write, and read (headers and body).

httpx's timeouts are per phase and *per socket operation*: a read timeout of
0.5 s is restarted by every byte that arrives, so a provider (or a proxy) that
trickles its answer a byte at a time holds an attempt for as long as it likes
-- past the operation's deadline, with the payer waiting. A ``Call`` effect's
``timeout`` is meant as the attempt's total; this module makes it one.

*Async client*: ``asyncio.timeout(call.timeout)`` around ``AsyncClient.send``,
which reads the body before it returns (see :func:`send_async`). Cancelling
httpx is supported: httpcore closes a connection whose request was cancelled
mid-answer, and the pool forgets a request cancelled while waiting.

*Sync client*: no cancellation exists, so the limit is applied where the time
is spent -- in every socket operation. :func:`bound` wraps the httpcore
network backend of the client's transports (the public
``httpcore.NetworkBackend`` interface, delegating all I/O to httpcore's own
backend) so that, while an attempt runs in the calling thread (a
:class:`~contextvars.ContextVar` holds its deadline, see :func:`send_sync`),
each connect, read and write waits at most the time left until the deadline;
once it has passed, the next one raises httpcore's own ``ReadTimeout`` /
``WriteTimeout`` / ``ConnectTimeout``, which httpx maps to its timeouts
(``Engine.failure``: outcome unknown) and after which httpcore closes the
connection. Outside an attempt (no deadline set) the backend behaves exactly
like the one it wraps, so wrapping a caller's shared ``httpx.Client`` changes
nothing for their own requests.

Why not the other ways to bound a blocking call:

* streaming the response and checking the clock between chunks bounds the
  body only: httpcore reads the *headers* in one call whose read timeout is
  fixed when it starts, so a trickle of header bytes is never interrupted;
* sending in a worker thread and abandoning it after the timeout bounds the
  caller's wait, but the abandoned thread and its connection live on for as
  long as the trickle lasts (closing a socket does not wake a thread blocked
  in ``recv`` on Linux; only ``shutdown`` does, and httpx never tells us which
  pooled socket a request uses before the headers arrive) -- and the thread
  hop costs every call;
* a watchdog shutting the socket down has the same "which socket" problem.

Bounding each socket operation costs one clock read per operation, needs no
thread, leaks nothing (a timed-out attempt's connection is closed by httpcore),
and keeps the client thread-safe (the deadline is per thread / context).

What it cannot bound: a DNS lookup (``getaddrinfo`` takes no timeout) and, with
several addresses for one host, each connect attempt gets the time left. The
hook uses two private attributes (``httpx.HTTPTransport._pool`` and the pool's
``_network_backend``); httpx 0.28 has no public way to choose the backend. A
test checks they are still there; if not, :func:`bound` reports ``False`` and
the client logs a warning (httpx's per-phase timeouts still apply).
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections.abc import Iterable
from contextvars import ContextVar

import httpcore
import httpx

__all__ = ["TotalTimeout", "bound", "send_async", "send_sync"]

_log = logging.getLogger("payflow.client")

#: When the attempt running in this thread / context must end (``time.monotonic()``).
_deadline: ContextVar[float | None] = ContextVar("payflow_attempt_deadline", default=None)

_Error = type[httpcore.TimeoutException]
SocketOption = typing.Any  # httpcore's SOCKET_OPTION (not exported)


def _left(timeout: float | None, error: _Error) -> float | None:
    """``timeout`` cut to the time left before the attempt's deadline.

    Raises ``error`` if the deadline has passed.
    """
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the attempt's total timeout passed")
    return left if timeout is None or timeout > left else timeout


class _Stream(httpcore.NetworkStream):
    """A network stream whose every operation ends by the attempt's deadline."""

    def __init__(self, stream: httpcore.NetworkStream) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, _left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, _left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self,
        ssl_context: typing.Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> typing.Any:
        return self._stream.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    """A network backend whose connections honour the attempt's deadline."""

    def __init__(self, backend: httpcore.NetworkBackend) -> None:
        self.backend = backend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self.backend.connect_tcp(host, port, timeout, local_address, socket_options))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.NetworkStream:
        timeout = _left(timeout, httpcore.ConnectTimeout)
        return _Stream(self.backend.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self.backend.sleep(seconds)


def bound(http: httpx.Client) -> bool:
    """Make the transports of ``http`` honour the attempt deadline (idempotent).

    Returns ``False`` if some transport could not be bound: one that is not an
    ``httpx.HTTPTransport`` (a mock, a custom transport), or an httpx whose
    internals moved. Connections ``http`` opened before are not bound until
    they are replaced: pass a fresh client.
    """
    transports: list[object] = [getattr(http, "_transport", None)]
    mounts = getattr(http, "_mounts", None)
    if isinstance(mounts, dict):
        transports.extend(t for t in mounts.values() if t is not None)
    ok = True
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, _Backend):
            continue
        if not isinstance(backend, httpcore.NetworkBackend):
            ok = False
            continue
        pool._network_backend = _Backend(backend)  # type: ignore[union-attr]
    return ok


def send_sync(http: httpx.Client, request: httpx.Request, timeout: float) -> httpx.Response:
    """``http.send(request)`` (headers and body) within ``timeout`` seconds in all.

    Past it, raises one of httpx's timeouts (see the module docstring).
    """
    token = _deadline.set(time.monotonic() + timeout)
    try:
        return http.send(request)
    finally:
        _deadline.reset(token)


class TotalTimeout(httpx.TimeoutException):
    """An async attempt ran past its total timeout (raised by :func:`send_async`)."""


async def send_async(
    http: httpx.AsyncClient, request: httpx.Request, timeout: float
) -> httpx.Response:
    """``await http.send(request)`` (headers and body) within ``timeout`` seconds in all.

    Past it, the send is cancelled (httpcore closes the connection) and
    :class:`TotalTimeout` -- an ``httpx.TimeoutException`` -- is raised. A
    cancellation of the calling task itself propagates unchanged.
    """
    timer = asyncio.timeout(timeout)
    try:
        async with timer:
            return await http.send(request)
    except TimeoutError:
        if not timer.expired():
            raise  # not ours (httpx raises its own types; perhaps an event hook)
        raise TotalTimeout("the attempt's total timeout passed", request=request) from None
