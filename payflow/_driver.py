"""What the sync and async clients share: everything but the lines doing network I/O.

:class:`Engine` turns a :class:`~payflow.core.messages.Call` into an
``httpx.Request``, turns what came back into a core outcome, and performs the
effects that need no network (clock, journal, hooks). The clients in
:mod:`payflow.client` add only ``send`` and ``sleep``.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from payflow.core import api
from payflow.core.backoff import Rng
from payflow.core.budget import RetryBudget
from payflow.core.calls import Context, Policy
from payflow.core.errors import InvalidRequest
from payflow.core.messages import (
    Call,
    Effect,
    Emit,
    Forget,
    NotSent,
    Now,
    PendingRecord,
    Response,
    Save,
    TimedOut,
)
from payflow.journal import Journal, MemoryJournal, SqliteJournal, owner_id

__all__ = ["Engine", "PaymentStatus", "Refund", "Run", "testing_active", "testing_depth"]

_log = logging.getLogger("payflow.client")
_VERSION = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
#: How many ``test_mode()`` blocks are open (stamina-style global switch).
testing_depth = [0]


def testing_active() -> bool:
    """True inside :func:`payflow.client.test_mode`."""
    return testing_depth[0] > 0


@dataclass(frozen=True, slots=True)
class PaymentStatus:
    """The provider's view of one payment (``status()``, ``cancel()``).

    ``state`` is the provider's: initiated, reserved, captured, declined,
    cancelled or expired. ``cancel()`` returns "cancelled" only when the
    provider confirmed it; otherwise the real state it found.
    """

    payment_id: str
    order_id: str
    state: str
    amount: int
    currency: str
    refunded_amount: int = 0
    poll_delay_ms: int | None = None

    @property
    def money_taken(self) -> bool:
        """True if the payer's money is reserved or captured."""
        return self.state in api.MONEY_TAKEN_STATES

    @property
    def final(self) -> bool:
        """True if the state can no longer change (refunds aside)."""
        return self.state in api.FINAL_PAYMENT_STATES

    @classmethod
    def from_body(cls, body: Mapping[str, Any], payment_id: str = "") -> PaymentStatus:
        """Read a payment body from the wire (camelCase) into a status."""
        delay = body.get("pollDelayInMs")
        return cls(
            payment_id=str(body.get("paymentId") or payment_id),
            order_id=str(body.get("orderId") or ""),
            state=api.payment_state(body),
            amount=_int(body.get("amount")),
            currency=str(body.get("currency") or ""),
            refunded_amount=_int(body.get("refundedAmount")),
            poll_delay_ms=delay if isinstance(delay, int) and not isinstance(delay, bool) else None,
        )


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund the provider accepted."""

    refund_id: str
    payment_id: str
    amount: int
    reference: str
    state: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Refund:
        """Read a refund body from the wire."""
        return cls(
            refund_id=str(body.get("refundId") or ""),
            payment_id=str(body.get("paymentId") or ""),
            amount=_int(body.get("amount")),
            reference=str(body.get("reference") or ""),
            state=str(body.get("state") or "completed"),
        )


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(slots=True, eq=False)
class Run:
    """The bookkeeping of one flow run: which journal records it saved.

    Compared and hashed by identity: the engine keeps the runs in progress.
    """

    saved: set[str] = field(default_factory=set)


def _text(value: object, name: str, pattern: re.Pattern[str], rule: str, show: bool) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidRequest(name, "must be a non-empty string")
    if not pattern.fullmatch(value):
        shown = f", got {value!r}" if show else ""
        raise InvalidRequest(name, f"must be {rule}{shown}")
    return value


def _base_url(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("base_url", "must be a non-empty string such as 'https://host'")
    try:
        url = httpx.URL(value.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise InvalidRequest("base_url", f"is not a valid URL ({exc})") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise InvalidRequest("base_url", f"must be an http:// or https:// URL, got {value!r}")
    if url.query or url.fragment:
        raise InvalidRequest("base_url", "must not have a query or fragment")
    return str(url).rstrip("/")


def open_journal(journal: object) -> tuple[Journal, bool]:
    """A journal from what the user passed, and whether the client owns (closes) it."""
    if journal is None:
        return MemoryJournal(), True
    if isinstance(journal, str) or hasattr(journal, "__fspath__"):
        return SqliteJournal(journal), True
    needed = ("save", "forget", "pending", "claim", "release", "close")
    if all(callable(getattr(journal, name, None)) for name in needed):
        return journal, False  # type: ignore[return-value]
    raise InvalidRequest(
        "journal", f"must be None, a file path or a journal object, got {type(journal).__name__}"
    )


class Engine:
    """Configuration and the effects both clients perform the same way."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: str,
        *,
        journal: object,
        policy: Policy,
        client_version: str,
        hooks: Iterable[Callable[[Any], object]] | Callable[[Any], object] | None,
        rng: Rng | None,
        budget: RetryBudget | None,
        test_mode: bool,
        lease: float | None,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.client_id = _text(
            client_id, "client_id", _HEADER_SAFE, "printable ASCII without spaces", True
        )
        _text(token, "token", _HEADER_SAFE, "printable ASCII without spaces", False)
        self.client_version = _text(
            client_version, "client_version", _VERSION, "Major.Minor.Build, e.g. '2.1.1'", True
        )
        if not isinstance(policy, Policy):
            raise InvalidRequest("policy", f"must be a payflow.core.Policy, got {policy!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise InvalidRequest("budget", f"must be a RetryBudget or None, got {budget!r}")
        if callable(hooks):
            hooks = [hooks]
        self.hooks: tuple[Callable[[Any], object], ...] = tuple(hooks or ())
        for hook in self.hooks:
            if not callable(hook):
                raise InvalidRequest("hooks", f"every hook must be callable, got {hook!r}")
        if lease is None:
            retry_deadline = policy.retry.deadline or 60.0
            lease = policy.polling.deadline + 4 * retry_deadline + 60.0
        if not lease > 0:
            raise InvalidRequest("lease", f"must be > 0 seconds, got {lease!r}")
        self.lease = float(lease)
        self.policy = policy
        self.test_mode = bool(test_mode)
        # SystemRandom by default: keys stay unique even in processes forked after start-up.
        self.ctx = Context(policy, rng if rng is not None else secrets.SystemRandom(), budget)
        self.journal, self.owns_journal = open_journal(journal)
        self.instance = secrets.token_hex(6)
        self._active: dict[Run, int] = {}
        self._active_lock = threading.Lock()
        self._headers = {
            "Authorization": f"Bearer {token}",
            api.CLIENT_ID_HEADER: self.client_id,
            api.CLIENT_VERSION_HEADER: self.client_version,
            "Accept": "application/json",
        }

    @property
    def owner(self) -> str:
        """This client's name in the journal (host, current pid, instance)."""
        return owner_id(self.instance)

    def describe(self, cls: str) -> str:
        """The client's repr: never the token."""
        return (
            f"{cls}(base_url={self.base_url!r}, client_id={self.client_id!r}, "
            f"client_version={self.client_version!r}, journal={self.journal!r})"
        )

    # ------------------------------------------------------------- network side
    def build(self, http: httpx.Client | httpx.AsyncClient, call: Call) -> httpx.Request:
        """The httpx request for ``call``, with the headers and the per-attempt timeout.

        httpx applies ``timeout`` per phase; the clients make it the attempt's
        total (:mod:`payflow._total_timeout`).
        """
        request = call.request
        headers = self._headers
        if request.idempotency_key is not None:
            headers = {**headers, api.IDEMPOTENCY_HEADER: request.idempotency_key}
        return http.build_request(
            request.method,
            self.base_url + request.path,
            json=dict(request.body) if request.body is not None else None,
            headers=headers,
            timeout=call.timeout,
        )

    @staticmethod
    def outcome(response: httpx.Response) -> Response:
        """A core :class:`Response` from an httpx response (body ``{}`` unless a JSON object)."""
        body: Any = {}
        if response.content:
            try:
                body = response.json()
            except ValueError:
                body = {}
        if not isinstance(body, dict):
            body = {}
        return Response(response.status_code, body, dict(response.headers))

    @staticmethod
    def failure(exc: httpx.TransportError) -> TimedOut | NotSent:
        """What a transport error means for money.

        Refused connections (and a request that never left the pool) certainly
        did not reach the provider: :class:`NotSent`. Everything else -- a
        timeout, a reset, a connection closed mid-answer -- may have: the outcome
        is unknown (:class:`TimedOut`).
        """
        if isinstance(exc, httpx.ConnectError | httpx.PoolTimeout | httpx.UnsupportedProtocol):
            return NotSent(type(exc).__name__)
        return TimedOut(type(exc).__name__)

    def sleep_seconds(self, seconds: float) -> float:
        """How long a Sleep really waits: zero in test mode."""
        return 0.0 if self.test_mode or testing_depth[0] > 0 else seconds

    # ------------------------------------------------------------- local effects
    def perform(self, effect: Effect, run: Run) -> Any:
        """Perform a clock, journal or hook effect."""
        kind = type(effect)
        if kind is Now:
            return time.monotonic()
        if kind is Emit:
            self.emit(effect.event)  # type: ignore[union-attr]
            return None
        if kind is Save:
            record: PendingRecord = effect.record  # type: ignore[union-attr]
            # Noted first: a flow cancelled while the write runs (async: in a thread)
            # still releases the record for recover() (releasing a missing one is a no-op).
            run.saved.add(record.idempotency_key)
            self.journal.save(record, self.owner, time.time() + self.lease)
            return None
        if kind is Forget:
            key: str = effect.idempotency_key  # type: ignore[union-attr]
            try:
                self.journal.forget(key)
            except Exception:
                # The outcome is final and already decided; a stale record is settled
                # by a later recover(). Raising here could hide a taken payment.
                _log.error("journal: could not forget record %s", key, exc_info=True)
            run.saved.discard(key)
            return None
        raise TypeError(f"unknown effect {effect!r}")

    def emit(self, event: object) -> None:
        """Hand ``event`` to every hook; a failing hook is logged and skipped."""
        if _log.isEnabledFor(logging.DEBUG):
            _log.debug("%r", event)
        for hook in self.hooks:
            try:
                hook(event)
            except Exception:
                _log.warning("hook %r raised on %s; ignored", hook, type(event).__name__,
                             exc_info=True)  # fmt: skip

    def forget_kept(self, run: Run) -> None:
        """Forget every record ``run`` left in the journal (its caller has the outcome)."""
        for key in list(run.saved):
            self.perform(Forget(key), run)

    def abandon(self, run: Run) -> None:
        """A flow stopped abnormally: let ``recover()`` take its records at once."""
        self._release(list(run.saved))

    def _release(self, keys: list[str]) -> None:
        """End this client's lease on ``keys``; a failure is logged (the lease runs out)."""
        if not keys:
            return
        try:
            self.journal.release(keys, self.owner)
        except Exception:
            _log.error("journal: could not release %d record(s)", len(keys), exc_info=True)

    @contextmanager
    def running(self, run: Run) -> Iterator[Run]:
        """Mark ``run`` as in progress in this client for the duration of the block."""
        with self._active_lock:
            self._active[run] = self._active.get(run, 0) + 1
        try:
            yield run
        finally:
            with self._active_lock:
                left = self._active.pop(run) - 1
                if left:
                    self._active[run] = left

    def busy_keys(self) -> set[str]:
        """Journal keys of the records flows of this client are working on right now."""
        with self._active_lock:
            runs = list(self._active)
        keys: set[str] = set()
        for run in runs:
            keys.update(set(run.saved))  # a copy: the run's thread may be adding to it
        return keys

    def end_recover(self, records: list[PendingRecord], results: list[Any]) -> None:
        """After ``recover()`` (finished or stopped by an error): end this client's
        lease on what nobody works on any more -- records left "reported" or "kept",
        and those it never reached -- so another process may acknowledge or recheck
        them at once."""
        settled = [
            record.idempotency_key
            for record, result in zip(records, results, strict=False)
            if result.action in ("reported", "kept")
        ]
        self._release(settled + [r.idempotency_key for r in records[len(results) :]])

    def claim(self) -> list[PendingRecord]:
        """Take the journal records this client should settle now."""
        return self.journal.claim(self.owner, time.time() + self.lease)

    def close(self) -> None:
        """Close the journal if the client opened it."""
        if self.owns_journal:
            self.journal.close()
