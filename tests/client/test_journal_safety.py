"""The journal keeps a payment until the caller has it: ``on_paid`` and ``acknowledge``.

Every test runs against both clients (the parametrised ``make_client``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from payflow.client import AsyncPaymentClient, PaymentClient
from payflow.core._flows import PaymentResult
from payflow.core.events import Poll
from payflow.core.messages import PendingRecord
from payflow.errors import InvalidRequest
from payflow.journal import SqliteJournal, owner_id
from payflow.provider.ledger import PayerModel

from .conftest import MakeClient, Provider, fast_policy, order_id

MONEY = {"reserved", "captured"}


def charged(payments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [p for p in payments if p["state"] in MONEY and p["refundedAmount"] < p["amount"]]


def _callback(kind: str, body: Any) -> Any:
    """``body`` as the on_paid callable: a plain function, or a coroutine function (async)."""
    if kind == "sync":
        return body

    async def on_paid(result: PaymentResult) -> None:
        body(result)

    return on_paid


def test_on_paid_sees_the_record_before_it_is_forgotten(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    oid = order_id()
    seen: list[tuple[PaymentResult, list[Any]]] = []

    def store(result: PaymentResult) -> None:
        seen.append((result, client.journal.pending()))

    result = client.pay(oid, 100, on_paid=_callback(client.kind, store))
    [(given, records)] = seen
    assert given == result
    [record] = records  # still journalled while the caller stores the result
    assert (record.reference, record.payment_id, record.state) == (
        oid,
        result.payment_id,
        "pending",
    )
    assert client.journal.pending() == []  # forgotten once on_paid returned
    assert client.recover() == []


def test_on_paid_with_keep_record_waits_for_acknowledge(
    provider: Provider, make_client: MakeClient
) -> None:
    client = make_client()
    oid = order_id()
    calls: list[PaymentResult] = []
    result = client.pay(oid, 100, keep_record=True, on_paid=_callback(client.kind, calls.append))
    assert calls == [result]
    assert [r.reference for r in client.journal.pending()] == [oid]
    assert client.acknowledge(result) == 1
    assert client.journal.pending() == []


@pytest.mark.parametrize("refund_unclaimed", [True, False], ids=["refund", "report"])
def test_raising_on_paid_leaves_the_record_for_recover(
    provider: Provider, make_client: MakeClient, refund_unclaimed: bool
) -> None:
    client = make_client(policy=fast_policy(refund_unclaimed=refund_unclaimed))
    oid = order_id()

    def store(result: PaymentResult) -> None:
        raise RuntimeError("receipt store is down")

    with pytest.raises(RuntimeError, match="receipt store is down"):
        client.pay(oid, 100, on_paid=_callback(client.kind, store))
    [record] = client.journal.pending()
    assert record.reference == oid and record.payment_id
    [outcome] = client.recover()
    assert outcome.state == "captured"
    if refund_unclaimed:
        assert outcome.action == "refunded"
        assert charged(provider.payments(oid)) == []
        assert client.journal.pending() == []
    else:
        assert outcome.action == "reported"
        assert len(charged(provider.payments(oid))) == 1
        assert client.acknowledge(outcome) == 1
        assert client.journal.pending() == []


def test_on_paid_must_be_callable(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    oid = order_id()
    with pytest.raises(InvalidRequest) as info:
        client.pay(oid, 100, on_paid="store")
    assert info.value.field == "on_paid"
    assert provider.payments(oid) == []
    assert client.journal.pending() == []


class _Held:
    """A hook that holds the first poll of a payment until released."""

    def __init__(self) -> None:
        self.polling = threading.Event()
        self.release = threading.Event()

    def __call__(self, event: object) -> None:
        if isinstance(event, Poll) and not self.polling.is_set():
            self.polling.set()
            self.release.wait(10)


def _pay_in_thread(client: Any, oid: str, out: list[Any]) -> threading.Thread:
    def pay() -> None:
        try:
            out.append(client.pay(oid, 100))
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=pay, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("shared", ["other client", "same client"])
def test_acknowledge_by_order_id_keeps_a_payment_in_progress(
    provider: Provider, make_client: MakeClient, tmp_path: Path, shared: str
) -> None:
    provider.set_payer(PayerModel(approve_probability=1.0, decide_after_s=(0.2, 0.2)))
    path = str(tmp_path / "payments.db")
    held = _Held()
    paying = make_client(journal=path, hooks=[held])
    other = make_client(journal=path) if shared == "other client" else paying
    oid = order_id()
    out: list[Any] = []
    thread = _pay_in_thread(paying, oid, out)
    try:
        assert held.polling.wait(10)
        [record] = other.journal.pending()
        assert record.state == "pending" and record.payment_id  # mid-payment
        assert other.acknowledge(oid) == 0
        assert other.journal.pending() == [record]
    finally:
        held.release.set()
        thread.join(20)
    [result] = out
    assert isinstance(result, PaymentResult) and result.state == "captured"
    assert paying.journal.pending() == []


def test_acknowledge_by_order_id_after_keep_record(
    provider: Provider, make_client: MakeClient, tmp_path: Path
) -> None:
    path = str(tmp_path / "payments.db")
    first = make_client(journal=path, lease=0.2)
    second = make_client(journal=path)
    oid = order_id()
    first.pay(oid, 100, keep_record=True)
    assert second.acknowledge(oid) == 0  # still leased by the client that paid
    assert first.acknowledge(oid) == 1  # the payer's own finished payment
    assert first.journal.pending() == []
    oid2 = order_id()
    first.pay(oid2, 100, keep_record=True)
    time.sleep(0.3)  # the lease ran out: nobody is working on it any more
    assert second.acknowledge(oid2) == 1
    assert second.journal.pending() == []


def test_acknowledge_by_order_id_loses_a_race_with_a_claim(
    provider: Provider, make_client: MakeClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record claimed by another process between acknowledge's read and its delete stays."""
    path = str(tmp_path / "payments.db")
    first = make_client(journal=path, lease=0.01)
    oid = order_id()
    first.pay(oid, 100, keep_record=True)
    time.sleep(0.05)  # the payer's lease ran out: the record is finished and free
    second = make_client(journal=path)
    journal = second.journal
    read = journal.entries
    thief = SqliteJournal(path)
    thief_owner = owner_id("recovering-elsewhere")

    def entries_then_claim() -> list[Any]:
        seen = read()
        assert [r.reference for r in thief.claim(thief_owner, time.time() + 60)] == [oid]
        return seen

    monkeypatch.setattr(journal, "entries", entries_then_claim)
    try:
        assert second.acknowledge(oid) == 0  # the claim came between the read and the delete
        monkeypatch.undo()
        [entry] = journal.entries()
        assert entry.owner == thief_owner and entry.record.reference == oid
    finally:
        thief.close()


def test_sync_client_refuses_an_async_on_paid(provider: Provider, make_client: MakeClient) -> None:
    client = make_client()
    if client.kind == "async":
        pytest.skip("the async client awaits it")
    oid = order_id()

    async def store(result: PaymentResult) -> None:
        raise AssertionError("never run")

    with pytest.raises(TypeError, match="awaitable"):
        client.pay(oid, 100, on_paid=store)
    [record] = client.journal.pending()  # not stored, so not forgotten
    assert record.reference == oid
    [outcome] = client.recover()
    assert outcome.action == "refunded"


class _SlowJournal(SqliteJournal):
    """A durable journal whose saves take a while (a slow disk's fsync); ``saving`` is
    set while one runs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saving = threading.Event()
        self.saves = 0

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.saving.set()
        try:
            time.sleep(0.15)
            super().save(*args, **kwargs)
            self.saves += 1
        finally:
            self.saving.clear()

    def begin(self, *args: Any, **kwargs: Any) -> Any:  # a new payment's first save
        self.saving.set()
        try:
            time.sleep(0.15)
            found = super().begin(*args, **kwargs)
            self.saves += 1
            return found
        finally:
            self.saving.clear()


def test_async_client_keeps_the_event_loop_free_during_journal_writes(
    provider: Provider, tmp_path: Path
) -> None:
    """Journal saves run in a worker thread: other tasks on the loop go on meanwhile."""

    async def main() -> tuple[PaymentResult, int, _SlowJournal]:
        journal = _SlowJournal(tmp_path / "slow.db")
        ticks_while_saving = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks_while_saving
            while not stop.is_set():
                ticks_while_saving += journal.saving.is_set()
                await asyncio.sleep(0.005)

        task = asyncio.create_task(ticker())
        async with AsyncPaymentClient(
            provider.base_url, provider.client_id, provider.token, journal,
            policy=fast_policy(), budget=None,
        ) as client:  # fmt: skip
            result = await client.pay(order_id(), 100)
        stop.set()
        await task
        return result, ticks_while_saving, journal

    result, ticks_while_saving, journal = asyncio.run(main())
    assert result.state == "captured" and journal.pending() == []
    # Two slow saves (before the first send, and with the payment id). A save on the
    # loop would block it for its whole length: no tick could see one running.
    assert journal.saves == 2
    assert ticks_while_saving >= 2
    journal.close()


class _GatedJournal(SqliteJournal):
    """A SQLite journal whose ``save`` / ``claim`` wait at a gate: a write in flight."""

    def __init__(self, path: Path, gate: str) -> None:
        super().__init__(path)
        self.gate = gate
        self.entered = threading.Event()
        self.go = threading.Event()

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.gate == "save":
            self.entered.set()
            self.go.wait(10)
        super().save(*args, **kwargs)

    def claim(self, *args: Any, **kwargs: Any) -> list[Any]:
        taken = super().claim(*args, **kwargs)
        if self.gate == "claim":
            self.entered.set()
            self.go.wait(10)
        return taken


def _cancel_while_gated(journal: _GatedJournal, work: Any, cancels: int) -> None:
    """Start ``work()`` (a coroutine function), cancel it ``cancels`` times while the
    journal's gated write is in its thread, then let the write finish; expect
    CancelledError."""

    async def main() -> None:
        task = asyncio.ensure_future(work())
        while not journal.entered.is_set():
            await asyncio.sleep(0.005)
        for _ in range(cancels):
            task.cancel()
            await asyncio.sleep(0.05)  # delivered while the write still waits
        journal.go.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


@pytest.mark.parametrize("cancels", [1, 2])
def test_async_pay_cancelled_during_a_journal_write_releases_its_record(
    provider: Provider, tmp_path: Path, cancels: int
) -> None:
    """The write lands first, then the lease is let go: recover() may take it at once."""
    journal = _GatedJournal(tmp_path / "gated.db", "save")
    client = AsyncPaymentClient(
        provider.base_url, provider.client_id, provider.token, journal,
        policy=fast_policy(), budget=None,
    )  # fmt: skip
    oid = order_id()
    _cancel_while_gated(journal, lambda: client.pay(oid, 100), cancels)
    [entry] = journal.entries()
    assert entry.lease_until == 0.0  # released after the write, not re-leased by it
    [outcome] = PaymentClient(
        provider.base_url, provider.client_id, provider.token, journal,
        policy=fast_policy(), budget=None,
    ).recover()  # fmt: skip
    # Taken at once (no lease to wait out) and settled: the replayed create's
    # payment is cancelled, or refunded if the payer was quicker.
    assert outcome.action in ("cancelled", "refunded", "forgotten")
    assert journal.pending() == []
    assert [p for p in charged(provider.ledger()["payments"]) if p["orderId"] == oid] == []
    journal.close()


@pytest.mark.parametrize("cancels", [1, 2])
def test_async_recover_cancelled_during_its_claim_hands_the_records_back(
    provider: Provider, tmp_path: Path, cancels: int
) -> None:
    path = tmp_path / "gated.db"
    journal = _GatedJournal(path, "claim")
    journal.save(PendingRecord(order_id(), "key-abandoned-1", "pay", 100, "DKK", 0.0))
    client = AsyncPaymentClient(
        provider.base_url, provider.client_id, provider.token, journal,
        policy=fast_policy(), budget=None,
    )  # fmt: skip
    _cancel_while_gated(journal, client.recover, cancels)
    [entry] = journal.entries()
    assert entry.lease_until == 0.0  # claimed in the thread, then handed back
    journal.close()
