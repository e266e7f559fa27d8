"""Credentials and TLS for the httpx clients: the I/O side of authentication.

:class:`Credentials` holds the bearer token a client sends: a fixed string, or
one fetched from a *token provider* -- a callable (plain or ``async``; the sync
client takes plain ones) returning the token, or ``(token, expiry)`` where the
expiry is seconds from now (a number or :class:`~datetime.timedelta`, as
OAuth2's ``expires_in``), a :class:`~datetime.datetime` (aware, or naive UTC),
or ``None`` (no known expiry: refreshed after a 401 only). A provided token is
fetched before first use and again shortly before it expires (a tenth of its
lifetime before, at most 30 s), and once more when the core asks
(:class:`~payflow.core.messages.Authenticate`, after a 401) unless another
request already refreshed it.

The token never appears in a repr, log line or error message. A token
provider that raises or returns something unusable is logged (without the
token) and the request counts as not sent.

:func:`tls_context` builds the client's SSL context: certificates verified by
default, and never a protocol below TLS 1.2 (the MobilePay API uses TLS 1.2).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import logging
import os
import re
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from payflow.core.errors import InvalidRequest

__all__ = ["Credentials", "TokenUnavailable", "tls_context"]

_log = logging.getLogger("payflow.client")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
#: Refresh this long before expiry at most (or a tenth of the token's lifetime).
MAX_MARGIN_S = 30.0


class TokenUnavailable(Exception):
    """Internal: the token provider failed; the request is not sent."""


def _check(token: object, source: str) -> str:
    if not isinstance(token, str) or not token:
        raise InvalidRequest("token", f"{source} must be a non-empty string")
    if not _HEADER_SAFE.fullmatch(token):
        raise InvalidRequest("token", f"{source} must be printable ASCII without spaces")
    return token


def _lifetime(expiry: object) -> float | None:
    """Seconds the token stays valid from now (``None``: unknown)."""
    if expiry is None:
        return None
    if isinstance(expiry, dt.timedelta):
        return expiry.total_seconds()
    if isinstance(expiry, dt.datetime):
        when = expiry if expiry.tzinfo is not None else expiry.replace(tzinfo=dt.UTC)
        return (when - dt.datetime.now(dt.UTC)).total_seconds()
    if isinstance(expiry, int | float) and not isinstance(expiry, bool):
        return float(expiry)
    raise InvalidRequest(
        "token", "a token provider's expiry must be seconds, a timedelta, a datetime or None"
    )


class Credentials:
    """The bearer token of one client (see the module docstring).

    ``generation`` numbers the tokens: a request remembers the one it was sent
    with, so that after a 401 only a token no newer than the refused one is
    refreshed (many requests refused at once cause one fetch).
    """

    def __init__(self, token: object, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._provider: Callable[[], Any] | None = None
        self._token: str | None = None
        self._refresh_at: float | None = None
        self.generation = 0
        self._lock = threading.Lock()
        self._async_lock: asyncio.Lock | None = None
        if callable(token):
            self._provider = token
        else:
            self._token = _check(token, "token")
            self.generation = 1

    @property
    def fixed(self) -> bool:
        """True for a fixed token (nothing to refresh after a 401)."""
        return self._provider is None

    @property
    def provider(self) -> Callable[[], Any] | None:
        return self._provider

    @property
    def current(self) -> str | None:
        """The latest token (for redaction only; ``None`` before the first fetch)."""
        return self._token

    def __repr__(self) -> str:
        return "<credentials: fixed token>" if self.fixed else "<credentials: token provider>"

    def _fresh(self) -> tuple[str, int] | None:
        token, refresh_at = self._token, self._refresh_at
        if token is None or (refresh_at is not None and self._clock() >= refresh_at):
            return None
        return token, self.generation

    def _accept(self, value: object, started: float) -> tuple[str, int]:
        expiry: object = None
        if isinstance(value, tuple):
            if len(value) != 2:
                raise InvalidRequest(
                    "token", "a token provider must return TOKEN or (TOKEN, EXPIRY)"
                )
            value, expiry = value
        token = _check(value, "a token provider's token")
        lifetime = _lifetime(expiry)
        if lifetime is None:
            self._refresh_at = None
        else:
            margin = min(MAX_MARGIN_S, max(lifetime, 0.0) / 10.0)
            self._refresh_at = started + lifetime - margin
        self._token = token
        self.generation += 1
        return token, self.generation

    def _failed(self, exc: BaseException) -> TokenUnavailable:
        _log.error("payflow: the token provider failed (%s); request not sent",
                   type(exc).__name__, exc_info=not isinstance(exc, InvalidRequest))  # fmt: skip
        return TokenUnavailable(type(exc).__name__)

    # ----------------------------------------------------------------- sync
    def get(self, stale: int | None = None) -> tuple[str, int]:
        """The token to send and its generation; fetched if none is valid now (or
        if the current one is generation ``stale``). Raises :class:`TokenUnavailable`."""
        current = self._fresh()
        if current is not None and current[1] != stale:
            return current
        with self._lock:
            current = self._fresh()
            if current is not None and current[1] != stale:
                return current  # another thread refreshed it meanwhile
            assert self._provider is not None
            started = self._clock()
            try:
                value = self._provider()
                if inspect.isawaitable(value):
                    if inspect.iscoroutine(value):
                        value.close()
                    raise TypeError("the sync client cannot await a token provider")
                return self._accept(value, started)
            except Exception as exc:
                raise self._failed(exc) from None

    def refresh(self, used: int) -> bool:
        """After a 401 on a request sent with generation ``used``: is a newer token ready?"""
        if self.fixed:
            return False
        try:
            self.get(stale=used)
        except TokenUnavailable:
            return False
        return True

    # ---------------------------------------------------------------- async
    async def aget(self, stale: int | None = None) -> tuple[str, int]:
        """:meth:`get` for the async client: an ``async`` token provider is awaited."""
        current = self._fresh()
        if current is not None and current[1] != stale:
            return current
        if self._async_lock is None:
            self._async_lock = asyncio.Lock()
        async with self._async_lock:
            current = self._fresh()
            if current is not None and current[1] != stale:
                return current
            assert self._provider is not None
            started = self._clock()
            try:
                value = self._provider()
                if inspect.isawaitable(value):
                    value = await value
                return self._accept(value, started)
            except Exception as exc:
                raise self._failed(exc) from None

    async def arefresh(self, used: int) -> bool:
        """:meth:`refresh` for the async client."""
        if self.fixed:
            return False
        try:
            await self.aget(stale=used)
        except TokenUnavailable:
            return False
        return True


def tls_context(verify: object) -> ssl.SSLContext:
    """The SSL context a client makes its httpx client with; never below TLS 1.2.

    ``verify``: ``True`` (the system's and certifi's CAs), a path to a CA
    bundle file or directory, ``False`` (no verification: testing only), or
    an :class:`ssl.SSLContext` (its minimum version is raised to TLS 1.2).
    """
    if isinstance(verify, ssl.SSLContext):
        context = verify
    elif verify is True:
        try:
            import certifi

            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - httpx depends on certifi
            context = ssl.create_default_context()
        context.load_default_certs()
    elif verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif isinstance(verify, str | os.PathLike):
        path = os.fspath(verify)
        if os.path.isdir(path):
            context = ssl.create_default_context(capath=path)
        elif os.path.isfile(path):
            context = ssl.create_default_context(cafile=path)
        else:
            raise InvalidRequest("verify", f"no such CA file or directory: {path!r}")
    else:
        raise InvalidRequest(
            "verify", f"must be True, False, a CA bundle path or an ssl.SSLContext, got {verify!r}"
        )
    if context.minimum_version < ssl.TLSVersion.TLSv1_2:  # MINIMUM_SUPPORTED is -2
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context
