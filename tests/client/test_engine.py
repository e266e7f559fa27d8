"""The httpx drivers' shared engine on its own, without a server: fast guards of the
money rules that live in the I/O shell (what a failed send means, what a reply
becomes, what a save does to the journal). Mutation testing selects these."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx
import pytest

from payflow.core import NotSent, PendingRecord, Policy, TimedOut
from payflow.core.messages import Save
from payflow.drivers._httpx import Engine, Run
from payflow.errors import PaymentInProgress
from payflow.journal import MemoryJournal, SqliteJournal, leased_elsewhere

TOKEN = "s3cret-T0ken_value"


def engine(journal: Any = None) -> Engine:
    return Engine(
        "http://127.0.0.1:1", "pos-1", TOKEN, journal=journal, policy=Policy(),
        client_version="1.0.0", hooks=None, rng=random.Random(1), budget=None,
        lease=60.0,
    )  # fmt: skip


def reply(content: bytes, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=content, headers=headers)


def record(order: str, key: str, **changes: Any) -> PendingRecord:
    base = PendingRecord(order, key, "pay", 1000, "DKK", 0.0)
    return PendingRecord(**{**{f: getattr(base, f) for f in base.__slots__}, **changes})


@pytest.mark.parametrize(
    ("error", "meaning"),
    [
        (httpx.ConnectError("refused"), NotSent),
        (httpx.UnsupportedProtocol("ftp"), NotSent),
        (httpx.PoolTimeout("pool"), NotSent),
        (httpx.ReadError("reset"), TimedOut),
        (httpx.WriteError("pipe"), TimedOut),
        (httpx.RemoteProtocolError("closed"), TimedOut),
        (httpx.ReadTimeout("slow"), TimedOut),
        (httpx.ConnectTimeout("slow"), TimedOut),
        (httpx.DecodingError("gzip"), TimedOut),
    ],
)
def test_only_a_refused_connection_means_not_sent(error: Exception, meaning: type) -> None:
    assert type(Engine.failure(error)) is meaning  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[1, 2]", b'"text"', b"[" * 100_000 + b"]" * 100_000,
     b'{"a": ' + b"9" * 5000 + b"}", b"\xff\xfe\x00garbage"],
)  # fmt: skip
def test_a_reply_that_is_not_a_json_object_becomes_an_empty_body(content: bytes) -> None:
    out = engine().outcome(reply(content, 201))
    assert (out.status, dict(out.body)) == (201, {})


def test_a_json_object_reply_is_kept_as_it_is() -> None:
    body = {"paymentId": "p-1", "state": "initiated", "nested": {"a": [1, 2]}}
    out = engine().outcome(reply(json.dumps(body).encode(), 201, **{"Retry-After": "3"}))
    assert dict(out.body) == body and out.header("retry-after") == "3"


def test_the_token_is_redacted_from_everything_the_provider_says() -> None:
    body = {"message": f"bad token {TOKEN}", "details": [{"echo": f"Bearer {TOKEN}"}],
            TOKEN: "as a key"}  # fmt: skip
    out = engine().outcome(reply(json.dumps(body).encode(), 401, **{"X-Echo": TOKEN}))
    text = repr(out.body) + repr(out.headers)
    assert TOKEN not in text and text.count("[redacted]") == 4
    escaped = json.dumps({"message": TOKEN.replace("_", "\\u005f")}).encode()
    assert TOKEN not in repr(engine().outcome(reply(escaped, 400)).body)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_first_save_is_refused_while_the_order_has_a_payment(kind: str, tmp_path: Path) -> None:
    journal = MemoryJournal() if kind == "memory" else SqliteJournal(tmp_path / "j.db")
    eng, run = engine(journal), Run()
    eng.save(Save(record("o-1", "k-1"), first=True), run)
    assert run.saved == {"k-1"}
    other = Run()
    with pytest.raises(PaymentInProgress) as info:
        eng.save(Save(record("o-1", "k-2"), first=True), other)
    assert info.value.reference == "o-1" and other.saved == set()
    assert [r.idempotency_key for r in journal.pending()] == ["k-1"]
    # Another order, or a later save of the same payment, is not refused.
    eng.save(Save(record("o-2", "k-3"), first=True), other)
    eng.save(Save(record("o-1", "k-1", payment_id="p-1")), run)
    assert {r.idempotency_key: r.payment_id for r in journal.pending()} == {
        "k-1": "p-1", "k-3": None,
    }  # fmt: skip
    # Once the first payment's record is gone, the order may be paid again.
    eng.forget("k-1", run)
    eng.save(Save(record("o-1", "k-4"), first=True), Run())
    assert {r.idempotency_key for r in journal.pending()} == {"k-3", "k-4"}


@pytest.mark.parametrize(
    ("state", "payment_id", "words"),
    [("recheck", None, "recover()"), ("reported", "p-1", "acknowledge()"),
     ("pending", None, "in progress")],
)  # fmt: skip
def test_the_refusal_says_what_to_do(state: str, payment_id: str | None, words: str) -> None:
    journal = MemoryJournal()
    eng = engine(journal)
    journal.save(record("o-1", "k-1", state=state, payment_id=payment_id), eng.owner, 1e12)
    with pytest.raises(PaymentInProgress) as info:
        eng.save(Save(record("o-1", "k-2"), first=True), Run())
    assert words in str(info.value) and "nothing was sent" in str(info.value)


def test_saves_and_forgets_reach_the_journal_with_a_lease(tmp_path: Path) -> None:
    journal = SqliteJournal(tmp_path / "j.db")
    eng, run = engine(journal), Run()
    eng.save(Save(record("o-1", "k-1")), run)
    [entry] = journal.entries()
    assert entry.owner == eng.owner and entry.lease_until > 0 and run.saved == {"k-1"}
    eng.forget("k-1", run)
    assert journal.pending() == [] and run.saved == set()


def test_a_failure_names_its_cause() -> None:
    assert Engine.failure(httpx.ConnectError("refused")) == NotSent("ConnectError")
    assert Engine.failure(httpx.ReadTimeout("slow")) == TimedOut("ReadTimeout")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_a_first_save_is_owned_and_leased(kind: str, tmp_path: Path) -> None:
    import time

    journal = MemoryJournal() if kind == "memory" else SqliteJournal(tmp_path / "j.db")
    eng = engine(journal)
    eng.save(Save(record("o-1", "k-1"), first=True), Run())
    eng.save(Save(record("o-2", "k-2")), Run())
    for entry in journal.entries():
        assert entry.owner == eng.owner
        assert time.time() + 50 < entry.lease_until <= time.time() + 60


def test_a_refusal_names_a_payment_of_ours_in_progress_even_past_its_lease() -> None:
    journal = MemoryJournal()
    eng = engine(journal)
    journal.save(record("o-1", "k-1"), eng.owner, 1.0)  # ours, lease run out
    with pytest.raises(PaymentInProgress, match="in progress"):
        eng.save(Save(record("o-1", "k-2"), first=True), Run())


def test_a_refusal_asks_the_journal_whether_the_owner_lives() -> None:
    journal = MemoryJournal(alive=lambda owner: False)
    eng = engine(journal)
    journal.save(record("o-1", "k-1"), "elsewhere:1:x", 1e12)  # leased by a dead owner
    with pytest.raises(PaymentInProgress, match="stopped process") as info:
        eng.save(Save(record("o-1", "k-2"), first=True), Run())
    assert info.value.payment_id is None


def test_a_refusal_names_a_paid_payment_left_for_acknowledge() -> None:
    journal = MemoryJournal()
    eng = engine(journal)
    journal.save(record("o-1", "k-1", payment_id="p-1"))  # nobody's: a stopped process's
    with pytest.raises(PaymentInProgress, match="awaits acknowledge") as info:
        eng.save(Save(record("o-1", "k-2"), first=True), Run())
    assert info.value.payment_id == "p-1"


class DuckJournal:
    """A journal with only the required methods: no ``begin``, no ``alive``."""

    def __init__(self) -> None:
        self.inner = MemoryJournal()
        self.save = self.inner.save
        self.forget = self.inner.forget
        self.pending = self.inner.pending
        self.claim = self.inner.claim
        self.release = self.inner.release
        self.close = self.inner.close


def test_a_journal_without_begin_is_saved_to_without_the_guard() -> None:
    duck = DuckJournal()
    eng = engine(duck)
    eng.save(Save(record("o-1", "k-1"), first=True), Run())
    eng.save(Save(record("o-1", "k-2"), first=True), Run())
    assert [r.idempotency_key for r in duck.pending()] == ["k-1", "k-2"]


def test_a_refusal_falls_back_to_the_process_table_without_alive() -> None:
    from payflow.drivers._httpx import _in_progress
    from payflow.journal import JournalEntry

    entry = JournalEntry(record("o-1", "k-1"), "other-host:1:x", 1e12, 1.0)
    refusal = _in_progress(record("o-1", "k-2"), entry, "me", DuckJournal())
    assert "in progress" in str(refusal)  # another host's owner counts as alive


@pytest.mark.parametrize(
    ("owner", "lease", "alive", "leased"),
    [(None, 1e12, True, False), ("me", 1e12, True, False), ("other", 1e12, True, True),
     ("other", 10.0, True, False), ("other", 10.5, True, True), ("other", 1e12, False, False)],
)  # fmt: skip
def test_leased_elsewhere(owner: str | None, lease: float, alive: bool, leased: bool) -> None:
    from payflow.journal import JournalEntry

    seen: list[str] = []

    def is_alive(o: str) -> bool:
        seen.append(o)
        return alive

    entry = JournalEntry(record("o-1", "k-1"), owner, lease, 1.0)
    assert leased_elsewhere(entry, "me", now=10.0, alive=is_alive) is leased
    assert seen in ([], [owner])
    assert leased_elsewhere(entry, "me", alive=is_alive) is (leased and lease > 1e11)
