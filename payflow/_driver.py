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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from payflow.core import api
from payflow.core.backoff import Rng
from payflow.core.budget import RetryBudget
from payflow.core.calls import Context, Policy
from payflow.core.errors import InvalidRequest, PaymentInProgress
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
    json_object,
)
from payflow.core.replies import PaymentStatus, Refund
from payflow.journal import (
    Journal,
    JournalEntry,
    MemoryJournal,
    SqliteJournal,
    leased_elsewhere,
    owner_alive,
    owner_id,
)

__all__ = [
    "Engine",
    "PaymentStatus",
    "Refund",
    "Run",
    "read_reply",
    "testing_active",
    "testing_depth",
]

_log = logging.getLogger("payflow.client")
_VERSION = re.compile(r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]+")
_REDACTED = "[redacted]"


def read_reply(response: httpx.Response, token: str | None = None) -> Response:
    """A core :class:`Response` from an httpx response.

    The body is :func:`~payflow.core.messages.json_object` of the bytes: the
    decoded JSON object, or ``{}`` for anything else, which the core's reply
    readers find not understood. The ``token`` never passes: any provider text
    that echoes it has it redacted first.
    """
    content = response.content
    body: Any = json_object(content)
    headers = dict(response.headers)
    if token:
        if token.encode() in content or b"\\" in content:
            body = _redact(body, token)
        if any(token in value for value in headers.values()):
            headers = {k: v.replace(token, _REDACTED) for k, v in headers.items()}
    return Response(response.status_code, body, headers)


def _redact(value: Any, token: str) -> Any:
    """``value`` (decoded JSON) with every occurrence of ``token`` in its strings redacted."""
    if isinstance(value, str):
        return value.replace(token, _REDACTED)
    if isinstance(value, dict):
        return {_redact(k, token): _redact(v, token) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, token) for v in value]
    return value
#: How many ``test_mode()`` blocks are open (stamina-style global switch).
testing_depth = [0]


def testing_active() -> bool:
    """True inside :func:`payflow.client.test_mode`."""
    return testing_depth[0] > 0


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


def _in_progress(
    record: PendingRecord, entry: JournalEntry, owner: str, journal: object
) -> PaymentInProgress:
    """Why a new payment for ``record.reference`` may not start: the record in its way."""
    other = entry.record
    alive: Callable[[str], bool] = getattr(journal, "alive", owner_alive)
    if other.state == "reported":
        why = "recover() reported a payment for it as taken; acknowledge() it once stored"
    elif other.state == "recheck":
        why = "an earlier payment's outcome is not confirmed; settle it with recover() first"
    elif entry.owner is not None and (
        entry.owner == owner or leased_elsewhere(entry, owner, alive=alive)
    ):
        why = "a payment for it is in progress (here or in another process sharing the journal)"
    elif other.payment_id:
        why = "a paid payment for it awaits acknowledge() (or recover())"
    else:
        why = "a payment for it was left by a stopped process; run recover() first"
    return PaymentInProgress(
        f"order {record.reference!r}: {why}; nothing was sent",
        reference=record.reference,
        payment_id=other.payment_id,
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
        self._token = token
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

    def outcome(self, response: httpx.Response) -> Response:
        """A core :class:`Response` from an httpx response (see :func:`read_reply`)."""
        return read_reply(response, self._token)

    @staticmethod
    def failure(exc: httpx.RequestError) -> TimedOut | NotSent:
        """What a failed request means for money.

        Refused connections (and a request that never left the pool) certainly
        did not reach the provider: :class:`NotSent`. Everything else -- a
        timeout, a reset, a connection closed mid-answer, a body that cannot be
        decoded -- may have: the outcome is unknown (:class:`TimedOut`).
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
            until = time.time() + self.lease
            begin = getattr(self.journal, "begin", None) if effect.first else None  # type: ignore[union-attr]
            if begin is None:
                self.journal.save(record, self.owner, until)
                return None
            in_the_way = begin(record, self.owner, until)
            if in_the_way is not None:
                run.saved.discard(record.idempotency_key)
                raise _in_progress(record, in_the_way, self.owner, self.journal)
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
