"""The idempotent payment clients: thin httpx drivers of the flows in :mod:`payflow.core`.

:class:`PaymentClient` (``httpx.Client``) and :class:`AsyncPaymentClient`
(``httpx.AsyncClient``) run the *same* flow generators; they only perform the
effects the flows yield -- send a request within the per-attempt timeout (a
total for the attempt, body included), sleep, write the journal, call hooks
(through :mod:`payflow.drivers`' one loop). Every decision (retry or not, how long to wait, when to
poll, cancel or refund) is made in the core.

>>> with PaymentClient(url, client_id, token, journal="payments.db") as client:  # doctest: +SKIP
...     client.recover()                          # settle what a crash left behind
...     result = client.pay("order-1042", 1995)   # 19.95 DKK, in øre
...     result.payment_id, result.state

Errors come from :mod:`payflow.errors`; see its docstring for the tree.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx

from payflow import _auth, _total_timeout
from payflow.core import _flows as flows
from payflow.core import _validate as validate
from payflow.core._backoff import Rng
from payflow.core._budget import RetryBudget
from payflow.core._calls import Flow
from payflow.core._flows import PaymentResult
from payflow.core._keys import new_key
from payflow.core._policy import Policy
from payflow.core._recheck import RecheckResult, recheck
from payflow.core._replies import PaymentStatus, Refund
from payflow.core.errors import InvalidRequest
from payflow.core.messages import AskOperator, PendingRecord
from payflow.drivers import arun
from payflow.drivers import run as run_flow
from payflow.drivers._httpx import AsyncPerformer, Engine, Run, SyncPerformer, uncancellable
from payflow.journal import Journal, JournalEntry, SqliteJournal, leased_elsewhere, owner_alive

__all__ = [
    "AsyncPaymentClient",
    "PaymentClient",
    "PaymentResult",
    "PaymentStatus",
    "Policy",
    "RecheckResult",
    "Refund",
    "TokenArg",
]

T = TypeVar("T")
_log = logging.getLogger("payflow.client")
Hooks = Iterable[Callable[[Any], object]] | Callable[[Any], object] | None
JournalArg = str | Any | None  # a path, a journal object, or None (in memory)
OnPaid = Callable[[PaymentResult], object]
#: A bearer token, or a token provider: ``() -> TOKEN | (TOKEN, EXPIRY)`` (async allowed
#: for the async client); see :mod:`payflow._auth`.
TokenArg = str | Callable[[], Any]
#: Asked with a :class:`~payflow.core.messages.AskOperator` while a payment stays
#: pending; answers ``True``/"continue" or ``False``/"give up" (async allowed for the
#: async client).
Operator = Callable[[AskOperator], Any]
Verify = bool | str | os.PathLike[str] | ssl.SSLContext
_DEFAULT: Literal["default"] = "default"


class _Base:
    """Flow construction and journal handling shared by both clients."""

    _engine: Engine

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: TokenArg,
        journal: JournalArg = None,
        policy: Policy | None = None,
        client_version: str = "1.0.0",
        *,
        hooks: Hooks = None,
        rng: Rng | None = None,
        budget: RetryBudget | Literal["default"] | None = _DEFAULT,
        lease: float | None = None,
        operator: Operator | None = None,
        operator_interval_s: float = 60.0,
    ) -> None:
        self._engine = Engine(
            base_url,
            client_id,
            token,
            journal=journal,
            policy=policy if policy is not None else Policy(),
            client_version=client_version,
            hooks=hooks,
            rng=rng,
            budget=RetryBudget.aws_standard() if budget == _DEFAULT else budget,
            lease=lease,
            operator=operator,
            operator_interval_s=operator_interval_s,
        )

    @staticmethod
    def _tls(http: object, verify: Verify) -> ssl.SSLContext | None:
        """The SSL context for the httpx client this client makes (``None``: ``http``
        was given, and ``verify`` must then be left alone)."""
        if http is not None:
            if verify is not True:
                raise InvalidRequest(
                    "verify", "set it on the http client you pass (both were given)"
                )
            return None
        return _auth.tls_context(verify)

    def __repr__(self) -> str:
        return self._engine.describe(type(self).__name__)

    @property
    def journal(self) -> Journal:
        """The journal this client writes (SQLite if a path was given, else in memory)."""
        return self._engine.journal

    @property
    def policy(self) -> Policy:
        """The policy every flow of this client runs under."""
        return self._engine.policy

    def acknowledge(self, what: PaymentResult | RecheckResult | str) -> int:
        """Forget the journal record of a payment once the caller has stored it.

        Use after ``pay(..., keep_record=True)`` (pass the result) or for a
        ``"reported"`` recover result (pass it, or its order id). With an order
        id only finished records go: ``"reported"`` ones, and payments with a
        payment id that no one is still working on -- records awaiting a
        recheck are left to ``recover()``, and a record someone is working on
        (a payment in progress in this client, or a record leased by another
        client or process) is kept. The delete is a compare-and-delete: a record
        another process claims between the read and the delete stays too.
        Returns how many records were forgotten (0 if they were all kept:
        call again later, or let ``recover()`` settle them).
        """
        engine = self._engine
        journal = engine.journal
        if isinstance(what, PaymentResult):
            keys = [
                r.idempotency_key
                for r in journal.pending()
                if r.operation == "pay"
                and r.reference == what.order_id
                and (r.idempotency_key == what.idempotency_key or r.payment_id == what.payment_id)
            ]
            for key in keys:
                journal.forget(key)
            return len(keys)
        reference = what.reference if isinstance(what, RecheckResult) else what
        validate.reference(reference, "order_id")
        finished = self._finished_pay_records(reference)
        forget_unchanged = getattr(journal, "forget_unchanged", None)
        if forget_unchanged is None or not hasattr(journal, "entries"):  # a journal without owners
            for entry in finished:
                journal.forget(entry.record.idempotency_key)
            return len(finished)
        # Compare-and-delete: a record another process claimed after the read stays.
        return sum(1 for entry in finished if forget_unchanged(entry))

    def _finished_pay_records(self, reference: str) -> list[JournalEntry]:
        """The pay records of ``reference`` that ``acknowledge(order_id)`` may forget."""
        engine = self._engine
        journal = engine.journal
        mine, now, busy = engine.owner, time.time(), engine.busy_keys()
        alive: Callable[[str], bool] = getattr(journal, "alive", owner_alive)
        entries = getattr(journal, "entries", None)
        if entries is None:  # a journal without owners: only what recover() reported
            return [
                JournalEntry(r, None, 0.0, 0.0) for r in journal.pending()
                if r.operation == "pay" and r.reference == reference and r.state == "reported"
            ]  # fmt: skip
        found: list[JournalEntry] = []
        for entry in entries():
            r = entry.record
            if r.operation != "pay" or r.reference != reference:
                continue
            finished = r.state == "reported" or (
                r.state == "pending" and r.payment_id and r.idempotency_key not in busy
            )
            # Held by a live owner elsewhere: a payment in progress or a recheck running now.
            if finished and not leased_elsewhere(entry, mine, now=now, alive=alive):
                found.append(entry)
        return found

    @staticmethod
    def _check_on_paid(on_paid: OnPaid | None) -> None:
        if on_paid is not None and not callable(on_paid):
            raise InvalidRequest("on_paid", f"must be callable or None, got {on_paid!r}")

    # Flows: the same objects for both clients.
    def _pay(
        self, order_id: str, amount: int, currency: str, pos_id: str | None, keep: bool
    ) -> Flow[PaymentResult]:
        return flows.pay(
            order_id, amount, currency, self._engine.ctx, pos_id=pos_id, keep_record=keep
        )

    def _refund(self, payment_id: str, amount: int, reference: str | None) -> Flow[Refund]:
        ctx = self._engine.ctx
        ref = reference if reference is not None else "refund-" + new_key(ctx.rng)[:23]
        return (yield from flows.refund(payment_id, amount, ref, ctx))

    def _status(self, payment_id: str) -> Flow[PaymentStatus]:
        validate.payment_id(payment_id)
        return (yield from flows.status(payment_id, self._engine.ctx))

    def _cancel(self, payment_id: str) -> Flow[PaymentStatus]:
        validate.payment_id(payment_id)
        return (yield from flows.cancel(payment_id, self._engine.ctx))

    def _recover_failed(self, record: PendingRecord, exc: Exception) -> RecheckResult:
        """One record ``recover()`` could not settle: kept, reported, the others go on."""
        _log.error("recover: record %s kept (%s)", record.reference, exc)
        ids = (record.payment_id,) if record.payment_id else ()
        return RecheckResult(record.reference, record.operation, "kept", "error", ids)


class PaymentClient(_Base):
    """A synchronous payment client over ``httpx.Client``.

    ``journal`` is a file path (a durable :class:`~payflow.journal.SqliteJournal`),
    a journal object, or ``None`` (in memory: nothing survives a crash).
    ``policy`` sets retries, timeouts, polling and recovery (default: the
    MobilePay rules). ``client_version`` is sent as
    ``x-mobilepay-client-system-version``. ``http`` is your own
    ``httpx.Client`` (the client does not close it; its transports are wrapped
    so that each attempt's timeout is a total -- pass a fresh one, see
    :mod:`payflow._total_timeout`). ``hooks`` are callables
    receiving every event. ``rng`` draws keys and jitter (default
    :class:`random.SystemRandom`). ``budget`` is the retry budget shared by all
    calls (default AWS-standard; ``None`` for none); :func:`payflow.set_testing`
    skips every client's sleeps in tests.
    ``lease`` is how long (s) this client owns a journal record it is working on.

    ``token`` is the bearer token, or a token provider: a callable returning
    the token or ``(token, expiry)`` -- called before first use, shortly
    before the expiry, and once after a 401 (the refused request is then sent
    again under the same key; a second 401 raises
    :class:`~payflow.errors.AuthenticationFailed` and the journal keeps the
    payment). ``operator`` is asked, every ``operator_interval_s`` seconds a
    payment stays pending while polling, whether to keep waiting (see
    :class:`~payflow.core.messages.AskOperator`); "give up" cancels as at the
    polling deadline. ``verify`` (for the httpx client this client makes):
    ``True`` verifies certificates, a path names a CA bundle, ``False`` turns
    verification off; TLS below 1.2 is never offered.

    Thread-safe: one client may serve many threads.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: TokenArg,
        journal: JournalArg = None,
        policy: Policy | None = None,
        client_version: str = "1.0.0",
        http: httpx.Client | None = None,
        *,
        hooks: Hooks = None,
        rng: Rng | None = None,
        budget: RetryBudget | Literal["default"] | None = _DEFAULT,
        lease: float | None = None,
        operator: Operator | None = None,
        operator_interval_s: float = 60.0,
        verify: Verify = True,
    ) -> None:
        if http is not None and not isinstance(http, httpx.Client):
            raise TypeError(f"http: must be an httpx.Client, got {type(http).__name__}")
        for name, fn in (("token", token), ("operator", operator)):
            if inspect.iscoroutinefunction(fn):
                raise InvalidRequest(
                    name, "the sync client cannot await it (use AsyncPaymentClient)"
                )
        super().__init__(
            base_url, client_id, token, journal, policy, client_version,
            hooks=hooks, rng=rng, budget=budget, lease=lease,
            operator=operator, operator_interval_s=operator_interval_s,
        )  # fmt: skip
        #: The SSL context of the httpx client this client made (None: ``http`` given).
        self.tls_context = tls = self._tls(http, verify)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client(verify=tls or True)
        if not _total_timeout.bound(self._http):
            _log.warning(
                "payflow: cannot bound every transport of %r: the per-attempt timeout "
                "stays httpx's per-phase one there (a trickling answer can outlast it)",
                self._http,
            )

    def _run(self, flow: Flow[T], run: Run | None = None) -> T:
        engine = self._engine
        run = Run() if run is None else run
        with engine.flow_run(run):
            return run_flow(flow, SyncPerformer(engine, self._http, run))

    def pay(
        self,
        order_id: str,
        amount: int,
        currency: str = "DKK",
        *,
        pos_id: str | None = None,
        keep_record: bool = False,
        on_paid: OnPaid | None = None,
    ) -> PaymentResult:
        """Take ``amount`` (integer minor units) for ``order_id``; return once money is taken.

        Raises :class:`~payflow.errors.PaymentDeclined` /
        :class:`~payflow.errors.PaymentCancelled` (no money taken),
        :class:`~payflow.errors.OutcomeUnknown` (treat as not paid; the journal
        keeps it for ``recover()``), :class:`~payflow.errors.ProviderUnavailable`
        (nothing reached the provider) or :class:`~payflow.errors.InvalidRequest`
        (a bad argument; nothing sent).

        By default the journal forgets the payment *before* this returns: a
        crash between the return and your own store loses it. The crash-safe
        ways: ``on_paid`` -- called with the result while the journal still
        keeps it; the record is forgotten only once it returns (if it raises,
        the record stays for ``recover()`` and the exception propagates) -- or
        ``keep_record=True`` and :meth:`acknowledge` after storing the result.
        With both, ``on_paid`` runs and the record waits for :meth:`acknowledge`.
        """
        self._check_on_paid(on_paid)
        if on_paid is None:
            return self._run(self._pay(order_id, amount, currency, pos_id, keep_record))
        engine, run = self._engine, Run()
        with engine.running(run):  # in progress until on_paid returns
            result = self._run(self._pay(order_id, amount, currency, pos_id, True), run)
            try:
                stored = on_paid(result)
                if inspect.isawaitable(stored):
                    if inspect.iscoroutine(stored):
                        stored.close()  # never run: nothing was stored
                    raise TypeError(
                        "on_paid returned an awaitable: the sync client cannot await it "
                        "(use AsyncPaymentClient); the journal keeps the payment"
                    )
            except BaseException:
                engine.abandon(run)  # recover() may settle it at once
                raise
            if not keep_record:
                engine.forget_kept(run)
        return result

    def status(self, payment_id: str) -> PaymentStatus:
        """The provider's current view of a payment."""
        return self._run(self._status(payment_id))

    def cancel(self, payment_id: str) -> PaymentStatus:
        """Cancel a payment; the result's ``state`` is "cancelled" only if the provider
        confirmed it, otherwise the real state it reached (e.g. "captured")."""
        return self._run(self._cancel(payment_id))

    def refund(self, payment_id: str, amount: int, reference: str | None = None) -> Refund:
        """Refund ``amount`` of a payment; journalled and retried with one key.

        ``reference`` is your refund reference (generated if omitted).
        """
        return self._run(self._refund(payment_id, amount, reference))

    def recover(self) -> list[RecheckResult]:
        """Settle every journal record no live process is working on (call at start-up).

        A payment still pending is cancelled (or polled, per policy); money
        taken that the caller never saw is refunded (or "reported", per
        ``Policy.refund_unclaimed``: a reservation of the record's own payment
        is captured first when ``Policy.capture`` is on); a pending refund is
        retried with its key. Records that cannot be settled yet come back as
        "kept". The leases of "reported" and "kept" records are released.
        """
        engine = self._engine
        records = engine.claim()
        results: list[RecheckResult] = []
        try:
            for record in records:
                try:
                    results.append(self._run(recheck(record, engine.ctx)))
                except Exception as exc:  # one record's failure never stops the others
                    results.append(self._recover_failed(record, exc))
        finally:
            engine.end_recover(records, results)
        return results

    def close(self) -> None:
        """Close the HTTP client (if this client made it) and the journal (if it opened it)."""
        if self._owns_http:
            self._http.close()
        self._engine.close()

    def __enter__(self) -> PaymentClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncPaymentClient(_Base):
    """The asyncio twin of :class:`PaymentClient` over ``httpx.AsyncClient``.

    Same arguments and methods, awaited; the token provider and the operator
    may be plain or ``async`` callables (a plain one runs on the loop). With a
    :class:`SqliteJournal`, the records a flow saves before and while it pays (an fsync each) and
    ``recover()``'s claim are written in a worker thread
    (``asyncio.to_thread``), so other payments on the event loop go on
    meanwhile; a cancelled task waits for such a write to land before it lets
    go of its records. Forgetting a settled payment's record stays on the loop
    (a cancellation there could lose a taken payment), as do custom journals,
    which may be tied to one thread.
    """

    def __init__(
        self,
        base_url: str,
        client_id: str,
        token: TokenArg,
        journal: JournalArg = None,
        policy: Policy | None = None,
        client_version: str = "1.0.0",
        http: httpx.AsyncClient | None = None,
        *,
        hooks: Hooks = None,
        rng: Rng | None = None,
        budget: RetryBudget | Literal["default"] | None = _DEFAULT,
        lease: float | None = None,
        operator: Operator | None = None,
        operator_interval_s: float = 60.0,
        verify: Verify = True,
    ) -> None:
        if http is not None and not isinstance(http, httpx.AsyncClient):
            raise TypeError(f"http: must be an httpx.AsyncClient, got {type(http).__name__}")
        super().__init__(
            base_url, client_id, token, journal, policy, client_version,
            hooks=hooks, rng=rng, budget=budget, lease=lease,
            operator=operator, operator_interval_s=operator_interval_s,
        )  # fmt: skip
        #: The SSL context of the httpx client this client made (None: ``http`` given).
        self.tls_context = tls = self._tls(http, verify)
        self._owns_http = http is None
        self._http = http if http is not None else httpx.AsyncClient(verify=tls or True)

    async def _run(self, flow: Flow[T], run: Run | None = None) -> T:
        engine = self._engine
        run = Run() if run is None else run
        with engine.flow_run(run):
            return await arun(flow, AsyncPerformer(engine, self._http, run))

    async def pay(
        self,
        order_id: str,
        amount: int,
        currency: str = "DKK",
        *,
        pos_id: str | None = None,
        keep_record: bool = False,
        on_paid: OnPaid | None = None,
    ) -> PaymentResult:
        """Take ``amount`` for ``order_id``; see :meth:`PaymentClient.pay`.

        ``on_paid`` may be a plain function or a coroutine function (awaited).
        """
        self._check_on_paid(on_paid)
        if on_paid is None:
            return await self._run(self._pay(order_id, amount, currency, pos_id, keep_record))
        engine, run = self._engine, Run()
        with engine.running(run):  # in progress until on_paid returns
            result = await self._run(self._pay(order_id, amount, currency, pos_id, True), run)
            try:
                stored = on_paid(result)
                if inspect.isawaitable(stored):
                    await stored
            except BaseException:
                engine.abandon(run)  # recover() may settle it at once
                raise
            if not keep_record:
                engine.forget_kept(run)
        return result

    async def status(self, payment_id: str) -> PaymentStatus:
        """The provider's current view of a payment."""
        return await self._run(self._status(payment_id))

    async def cancel(self, payment_id: str) -> PaymentStatus:
        """Cancel a payment; see :meth:`PaymentClient.cancel`."""
        return await self._run(self._cancel(payment_id))

    async def refund(self, payment_id: str, amount: int, reference: str | None = None) -> Refund:
        """Refund ``amount`` of a payment; see :meth:`PaymentClient.refund`."""
        return await self._run(self._refund(payment_id, amount, reference))

    async def recover(self) -> list[RecheckResult]:
        """Settle every journal record no live process is working on; see
        :meth:`PaymentClient.recover`."""
        engine = self._engine
        if isinstance(engine.journal, SqliteJournal):
            claiming = asyncio.ensure_future(asyncio.to_thread(engine.claim))
            try:
                records = await uncancellable(claiming)
            except asyncio.CancelledError:
                # The claim committed in its thread: hand the records straight back.
                if not claiming.cancelled() and claiming.exception() is None:
                    engine.end_recover(claiming.result(), [])
                raise
        else:
            records = engine.claim()
        results: list[RecheckResult] = []
        try:
            for record in records:
                try:
                    results.append(await self._run(recheck(record, engine.ctx)))
                except Exception as exc:  # one record's failure never stops the others
                    results.append(self._recover_failed(record, exc))
        finally:
            engine.end_recover(records, results)
        return results

    async def aclose(self) -> None:
        """Close the HTTP client (if this client made it) and the journal (if it opened it)."""
        if self._owns_http:
            await self._http.aclose()
        self._engine.close()

    async def __aenter__(self) -> AsyncPaymentClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
