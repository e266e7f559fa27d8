"""The httpx performers: the clients' side of the effect loop, one screen each.

Rule: nothing here decides anything about money -- :mod:`payflow.core` does.
:class:`Engine` holds a client's configuration and performs what needs no
network (journal, hooks, credentials); :class:`SyncPerformer` and
:class:`AsyncPerformer` add the two things that differ between ``httpx.Client``
and ``httpx.AsyncClient``: sending a request within the attempt's total
timeout, and sleeping. :mod:`payflow.drivers._loop` hands them the effects.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import secrets
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx

from payflow import _total_timeout
from payflow._auth import Credentials, TokenUnavailable
from payflow._testing import is_testing
from payflow.core import _api as api
from payflow.core._backoff import Rng
from payflow.core._budget import RetryBudget
from payflow.core._calls import Context
from payflow.core._policy import Policy
from payflow.core.errors import InvalidRequest, OutcomeUnknown, PayflowError, PaymentInProgress
from payflow.core.messages import (
    AskOperator,
    Authenticate,
    Call,
    Forget,
    NotSent,
    Outcome,
    PendingRecord,
    Response,
    Save,
    Sleep,
    TimedOut,
    json_object,
)
from payflow.journal import (
    Journal,
    JournalEntry,
    MemoryJournal,
    SqliteJournal,
    leased_elsewhere,
    owner_alive,
    owner_id,
)

__all__ = ["AsyncPerformer", "Engine", "Run", "SyncPerformer", "read_reply"]

T = TypeVar("T")
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


@dataclass(slots=True, eq=False)
class Run:
    """The bookkeeping of one flow run: which journal records it saved.

    Compared and hashed by identity: the engine keeps the runs in progress.
    """

    saved: set[str] = field(default_factory=set)
    token_generation: int = 0  # the token the run's last request was sent with


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
        token: object,
        *,
        journal: object,
        policy: Policy,
        client_version: str,
        hooks: Iterable[Callable[[Any], object]] | Callable[[Any], object] | None,
        rng: Rng | None,
        budget: RetryBudget | None,
        lease: float | None,
        operator: Callable[[AskOperator], object] | None = None,
        operator_interval_s: float = 60.0,
    ) -> None:
        self.base_url = _base_url(base_url)
        self.client_id = _text(
            client_id, "client_id", _HEADER_SAFE, "printable ASCII without spaces", True
        )
        if not callable(token):
            _text(token, "token", _HEADER_SAFE, "printable ASCII without spaces", False)
        self.credentials = Credentials(token)
        if operator is not None and not callable(operator):
            raise InvalidRequest("operator", f"must be callable or None, got {operator!r}")
        if isinstance(operator_interval_s, bool) or not (
            isinstance(operator_interval_s, int | float) and operator_interval_s > 0
        ):
            raise InvalidRequest(
                "operator_interval_s", f"must be > 0 seconds, got {operator_interval_s!r}"
            )
        self.operator = operator
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
        # SystemRandom by default: keys stay unique even in processes forked after start-up.
        self.ctx = Context(
            policy,
            rng if rng is not None else secrets.SystemRandom(),
            budget,
            float(operator_interval_s) if operator is not None else None,
            clock=time.monotonic,
        )
        self.journal, self.owns_journal = open_journal(journal)
        self.instance = secrets.token_hex(6)
        self._active: dict[Run, int] = {}
        self._active_lock = threading.Lock()
        self._headers = {
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
            f"client_version={self.client_version!r}, journal={self.journal!r}, "
            f"credentials={self.credentials!r})"
        )

    # ------------------------------------------------------------- network side
    def build(
        self, http: httpx.Client | httpx.AsyncClient, call: Call, token: str
    ) -> httpx.Request:
        """The httpx request for ``call``, with the headers (``token`` as the bearer)
        and the per-attempt timeout.

        httpx applies ``timeout`` per phase; the clients make it the attempt's
        total (:mod:`payflow._total_timeout`).
        """
        request = call.request
        headers = {**self._headers, "Authorization": f"Bearer {token}"}
        if request.idempotency_key is not None:
            headers[api.IDEMPOTENCY_HEADER] = request.idempotency_key
        return http.build_request(
            request.method,
            self.base_url + request.path,
            json=dict(request.body) if request.body is not None else None,
            headers=headers,
            timeout=call.timeout,
        )

    def outcome(self, response: httpx.Response, token: str | None = None) -> Response:
        """A core :class:`Response` from an httpx response (see :func:`read_reply`);
        ``token``, the one the request was sent with (default: the current one), is
        redacted from it."""
        return read_reply(response, token if token is not None else self.credentials.current)

    def token(self, run: Run) -> str | None:
        """The token for the next request of ``run`` (``None``: the token provider
        failed -- logged -- and the request is not sent). Sync client only."""
        try:
            token, run.token_generation = self.credentials.get()
        except TokenUnavailable:
            return None
        return token

    async def atoken(self, run: Run) -> str | None:
        """:meth:`token` for the async client."""
        try:
            token, run.token_generation = await self.credentials.aget()
        except TokenUnavailable:
            return None
        return token

    @staticmethod
    def operator_answer(answer: object) -> bool:
        """The operator's answer as the core takes it: ``True`` keeps waiting.

        ``True`` or "continue" keep waiting; ``False`` or "give up" give up.
        Anything else is logged and read as "continue" (the polling deadline
        still bounds the wait).
        """
        if answer is True or answer is False:
            return answer
        if isinstance(answer, str):
            word = answer.strip().lower().replace("_", " ").replace("-", " ")
            if word == "continue":
                return True
            if word == "give up":
                return False
        _log.warning("operator: answer %r is not continue/give up; polling continues", answer)
        return True

    def operator_failed(self, exc: Exception) -> bool:
        """The operator callable raised: logged; polling continues (the deadline bounds it)."""
        _log.error("operator raised %s; polling continues", type(exc).__name__, exc_info=exc)
        return True

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
        """How long a Sleep really waits: zero in test mode (:func:`payflow.set_testing`).

        The flows' clock stays the real one (as in stamina's test mode): a provider
        in a test moves in real time too, so deadlines are kept in real time. A
        payment that stays pending is therefore polled without pause until its
        real polling deadline -- give test payments a short one.
        """
        return 0.0 if is_testing() else seconds

    # ------------------------------------------------------------- local effects
    def save(self, save: Save, run: Run) -> None:
        """Write ``save.record`` to the journal, leased to this client.

        A new payment's first save (``save.first``) goes through the journal's
        ``begin`` when it has one: refused while the order has a payment in
        flight, which raises :class:`PaymentInProgress` (nothing was sent).
        """
        record = save.record
        # Noted first: a flow cancelled while the write runs (async: in a thread)
        # still releases the record for recover() (releasing a missing one is a no-op).
        run.saved.add(record.idempotency_key)
        until = time.time() + self.lease
        begin = getattr(self.journal, "begin", None) if save.first else None
        if begin is None:
            self.journal.save(record, self.owner, until)
            return
        in_the_way = begin(record, self.owner, until)
        if in_the_way is not None:
            run.saved.discard(record.idempotency_key)
            raise _in_progress(record, in_the_way, self.owner, self.journal)

    def forget(self, key: str, run: Run) -> None:
        """Delete the record kept under ``key``; a failure is logged, never raised."""
        try:
            self.journal.forget(key)
        except Exception:
            # The outcome is final and already decided; a stale record is settled
            # by a later recover(). Raising here could hide a taken payment.
            _log.error("journal: could not forget record %s", key, exc_info=True)
        run.saved.discard(key)

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
            self.forget(key, run)

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
    def flow_run(self, run: Run) -> Iterator[Run]:
        """Run one flow: ``run`` is in progress meanwhile; if the flow stops
        abnormally its records are let go at once, and a failure that is not
        payflow's own becomes :class:`OutcomeUnknown` (the journal keeps
        whatever the flow saved)."""
        with self.running(run):
            try:
                yield run
            except PayflowError:
                self.abandon(run)
                raise
            except Exception as exc:
                self.abandon(run)
                _log.error("payflow: unexpected %s while a flow ran", type(exc).__name__,
                           exc_info=exc)  # fmt: skip
                raise OutcomeUnknown(
                    f"unexpected {type(exc).__name__} while talking to the provider; treat "
                    "as not paid -- the journal keeps any payment for recover()"
                ) from exc
            except BaseException:
                self.abandon(run)
                raise

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


class SyncPerformer:
    """Performs one flow run's effects for :class:`~payflow.client.PaymentClient`."""

    __slots__ = ("engine", "http", "run")

    def __init__(self, engine: Engine, http: httpx.Client, run: Run) -> None:
        self.engine, self.http, self.run = engine, http, run

    def call(self, call: Call) -> Outcome:
        engine = self.engine
        token = engine.token(self.run)
        if token is None:
            return NotSent("token provider failed")
        request = engine.build(self.http, call, token)
        try:  # the timeout is the attempt's total (see payflow._total_timeout)
            response = _total_timeout.send_sync(self.http, request, call.timeout)
        except httpx.RequestError as exc:
            return engine.failure(exc)
        return engine.outcome(response, token)

    def sleep(self, sleep: Sleep) -> None:
        seconds = self.engine.sleep_seconds(sleep.seconds)
        if seconds > 0:
            time.sleep(seconds)

    def save(self, save: Save) -> None:
        self.engine.save(save, self.run)

    def forget(self, forget: Forget) -> None:
        self.engine.forget(forget.idempotency_key, self.run)

    def authenticate(self, authenticate: Authenticate) -> bool:
        return self.engine.credentials.refresh(self.run.token_generation)

    def ask_operator(self, question: AskOperator) -> bool:
        engine = self.engine
        assert engine.operator is not None
        try:
            answer = engine.operator(question)
            if inspect.isawaitable(answer):
                if inspect.iscoroutine(answer):
                    answer.close()
                raise TypeError("the sync client cannot await the operator's answer")
        except Exception as exc:
            return engine.operator_failed(exc)
        return engine.operator_answer(answer)

    def emit(self, event: object) -> None:
        self.engine.emit(event)


class AsyncPerformer:
    """Performs one flow run's effects for :class:`~payflow.client.AsyncPaymentClient`.

    With a :class:`SqliteJournal` a ``Save`` (an fsync) runs in a worker thread
    so other payments on the loop go on; ``Forget`` stays on the loop: it ends a
    flow whose outcome is decided, and a cancellation landing in a thread hop
    there could lose the result after the record is gone.
    """

    __slots__ = ("blocks", "engine", "http", "run")

    def __init__(self, engine: Engine, http: httpx.AsyncClient, run: Run) -> None:
        self.engine, self.http, self.run = engine, http, run
        # Only the SQLite journal is known to be safe to call from another thread.
        self.blocks = isinstance(engine.journal, SqliteJournal)

    async def call(self, call: Call) -> Outcome:
        engine = self.engine
        token = await engine.atoken(self.run)
        if token is None:
            return NotSent("token provider failed")
        request = engine.build(self.http, call, token)
        try:  # the timeout is the attempt's total (see payflow._total_timeout)
            response = await _total_timeout.send_async(self.http, request, call.timeout)
        except httpx.RequestError as exc:
            return engine.failure(exc)
        return engine.outcome(response, token)

    async def sleep(self, sleep: Sleep) -> None:
        await asyncio.sleep(self.engine.sleep_seconds(sleep.seconds))

    async def save(self, save: Save) -> None:
        if self.blocks:
            await uncancellable(asyncio.to_thread(self.engine.save, save, self.run))
        else:
            self.engine.save(save, self.run)

    async def forget(self, forget: Forget) -> None:
        self.engine.forget(forget.idempotency_key, self.run)

    async def authenticate(self, authenticate: Authenticate) -> bool:
        return await self.engine.credentials.arefresh(self.run.token_generation)

    async def ask_operator(self, question: AskOperator) -> bool:
        """A plain operator callable is called on the loop (keep it quick), an
        ``async`` one awaited."""
        engine = self.engine
        assert engine.operator is not None
        try:
            answer = engine.operator(question)
            if inspect.isawaitable(answer):
                answer = await answer
        except Exception as exc:
            return engine.operator_failed(exc)
        return engine.operator_answer(answer)

    def emit(self, event: object) -> None:
        self.engine.emit(event)


async def uncancellable(work: Awaitable[T]) -> T:
    """Await ``work`` to its end even if the awaiting task is cancelled meanwhile.

    A journal write in a worker thread finishes whatever happens to the task;
    waiting for it means the flow's clean-up (releasing its records) runs on
    the journal as written, not before the write lands. The cancellation is
    then re-raised.
    """
    task = asyncio.ensure_future(work)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        while not task.done():  # however often it is cancelled meanwhile
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(task)
        raise
