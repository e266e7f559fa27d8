"""The journals on their own: storage, claims and leases, bad files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from payflow.core.messages import PendingRecord
from payflow.errors import JournalError, PayflowError
from payflow.journal import MemoryJournal, SqliteJournal, owner_alive, owner_id


def record(key: str, state: str = "pending", **changes: object) -> PendingRecord:
    values: dict[str, object] = {
        "reference": f"order-{key}",
        "idempotency_key": key,
        "operation": "pay",
        "amount": 100,
        "currency": "DKK",
        "created_at": 1.5,
        "state": state,
    }
    values.update(changes)
    return PendingRecord(**values)  # type: ignore[arg-type]


@pytest.fixture(params=["memory", "sqlite"])
def journal(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[MemoryJournal | SqliteJournal]:
    j: MemoryJournal | SqliteJournal
    j = MemoryJournal() if request.param == "memory" else SqliteJournal(tmp_path / "j.db")
    yield j
    j.close()


def test_save_replace_forget(journal: MemoryJournal | SqliteJournal) -> None:
    a = record("a")
    b = record("b", payment_id="p-1", key_sent=False)
    journal.save(a)
    journal.save(b)
    assert journal.pending() == [a, b]
    a2 = record("a", state="recheck", payment_id="p-2")
    journal.save(a2)
    assert journal.pending() == [a2, b]  # replaced in place, oldest first
    journal.forget("a")
    journal.forget("a")  # forgetting twice is fine
    assert journal.pending() == [b]


def test_claims_follow_owner_and_lease(journal: MemoryJournal | SqliteJournal) -> None:
    me, other = owner_id("me"), owner_id("other")
    journal.save(record("mine-live"), me, 1e12)  # a payment of ours in progress
    journal.save(record("mine-gave-up", "recheck"), me, 1e12)
    journal.save(record("theirs-live"), other, 1e12)  # same pid: counts as alive
    journal.save(record("theirs-expired"), other, 5.0)
    journal.save(record("nobodys"))
    journal.save(record("dead", "pending"), "localhost-not-here:1:x", 1e12)  # other host
    taken = {r.idempotency_key for r in journal.claim(me, 100.0, now=10.0)}
    assert taken == {"mine-gave-up", "theirs-expired", "nobodys"}
    # Claimed records are now leased to us: nobody else takes them.
    assert journal.claim(other, 100.0, now=20.0) == []
    journal.release(["theirs-expired"], me)
    assert [r.idempotency_key for r in journal.claim(other, 100.0, now=20.0)] == ["theirs-expired"]


def test_forget_unchanged_is_a_compare_and_delete(journal: MemoryJournal | SqliteJournal) -> None:
    me, other = owner_id("me"), owner_id("other")
    journal.save(record("a", payment_id="p-1"), me, 5.0)
    [seen] = journal.entries()
    journal.claim(other, 100.0, now=10.0)  # the lease ran out and another owner took it
    assert journal.forget_unchanged(seen) is False
    [now] = journal.entries()
    assert now.owner == other  # still there, in the new owner's hands
    journal.save(record("a", "reported", payment_id="p-1"), other, 100.0)
    assert journal.forget_unchanged(now) is False  # its state changed since the read
    [latest] = journal.entries()
    assert journal.forget_unchanged(latest) is True
    assert journal.pending() == []
    assert journal.forget_unchanged(latest) is False  # gone already


def test_dead_owner_is_claimed_at_once(journal: MemoryJournal | SqliteJournal) -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    dead = owner_id("x").split(":")[0] + f":{int(child.stdout)}:x"
    assert not owner_alive(dead)
    assert owner_alive(owner_id("x"))
    journal.save(record("orphan"), dead, 1e12)
    assert [r.idempotency_key for r in journal.claim(owner_id("me"), 1e12)] == ["orphan"]


def test_sqlite_is_durable_across_connections(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    first = SqliteJournal(path)
    assert first.synchronous == "FULL"
    first.save(record("a", payment_id="p-1"))
    first.close()
    second = SqliteJournal(str(path), synchronous="normal")
    assert second.pending() == [record("a", payment_id="p-1")]
    mode = second._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    second.close()


def test_bad_paths_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "j.db"
    with pytest.raises(JournalError, match="no/such/dir"):
        SqliteJournal(missing)
    with pytest.raises(JournalError, match="is a directory"):
        SqliteJournal(tmp_path)
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(JournalError, match=r"corrupt\.db") as info:
        SqliteJournal(corrupt)
    assert isinstance(info.value, PayflowError) and info.value.path == str(corrupt)
    other = tmp_path / "other.db"
    import sqlite3

    db = sqlite3.connect(other)
    db.execute("CREATE TABLE pending (x INTEGER)")
    db.commit()
    db.close()
    with pytest.raises(JournalError, match="not a payflow journal"):
        SqliteJournal(other)
    with pytest.raises(ValueError, match="synchronous"):
        SqliteJournal(tmp_path / "x.db", synchronous="SOMETIMES")


def test_begin_refuses_a_second_payment_of_an_order(journal: MemoryJournal | SqliteJournal) -> None:
    me = owner_id("me")
    assert journal.begin(record("a", reference="o-1"), me, 50.0) is None
    journal.save(record("r", operation="refund", reference="o-2"))
    assert journal.begin(record("b", reference="o-2"), me, 60.0) is None  # a refund is no payment
    assert journal.begin(record("c", reference="o-10"), None, 0.0) is None  # another order
    in_the_way = journal.begin(record("d", reference="o-1"), me, 70.0)
    assert in_the_way is not None and in_the_way.record == record("a", reference="o-1")
    assert (in_the_way.owner, in_the_way.lease_until) == (me, 50.0)
    entries = journal.entries()
    assert [(e.record.idempotency_key, e.owner, e.lease_until) for e in entries] == [
        ("a", me, 50.0), ("r", None, 0.0), ("b", me, 60.0), ("c", None, 0.0),
    ]  # fmt: skip
    assert [e.saved_at for e in entries] == sorted(e.saved_at for e in entries)
    assert len({e.saved_at for e in entries}) == 4


def test_save_keeps_the_first_save_time_and_takes_the_new_owner(
    journal: MemoryJournal | SqliteJournal,
) -> None:
    me, other = owner_id("me"), owner_id("other")
    journal.save(record("a"), me, 10.0)
    journal.save(record("b"), me, 10.0)
    journal.save(record("a", "recheck"), other, 20.0)
    entries = journal.entries()
    got = [(e.record.idempotency_key, e.record.state, e.owner, e.lease_until) for e in entries]
    assert got == [
        ("a", "recheck", other, 20.0), ("b", "pending", me, 10.0),
    ]  # fmt: skip


def test_release_ends_only_the_owners_lease(journal: MemoryJournal | SqliteJournal) -> None:
    me, other = owner_id("me"), owner_id("other")
    journal.save(record("a"), me, 1e12)
    journal.save(record("b"), other, 1e12)
    journal.release(["a", "b", "missing"], me)
    got = {e.record.idempotency_key: (e.owner, e.lease_until) for e in journal.entries()}
    assert got == {"a": (me, 0.0), "b": (other, 1e12)}


def test_a_lease_ending_now_is_claimable_oldest_first(
    journal: MemoryJournal | SqliteJournal,
) -> None:
    other = owner_id("other")
    for key in ("z", "y", "x"):
        journal.save(record(key), other, 10.0)
    claimed = journal.claim(owner_id("me"), 100.0, now=10.0)
    assert [r.idempotency_key for r in claimed] == ["z", "y", "x"]


def test_a_failing_database_is_a_journal_error_naming_the_action(tmp_path: Path) -> None:
    """A save that fails must stop the flow as a JournalError (nothing is sent)."""
    j = SqliteJournal(tmp_path / "j.db")
    j.save(record("a"))
    [entry] = j.entries()
    j._db.close()
    path = str(tmp_path / "j.db")
    for action, words in [
        (lambda: j.save(record("b")), "cannot save a record"),
        (lambda: j.begin(record("b")), "cannot save a record"),
        (lambda: j.forget("a"), "cannot forget a record"),
        (lambda: j.forget_unchanged(entry), "cannot forget a record"),
        (j.entries, "cannot read"),
        (lambda: j.claim(owner_id("me"), 1.0), "cannot claim records"),
        (lambda: j.release(["a"], owner_id("me")), "cannot release records"),
    ]:
        with pytest.raises(JournalError) as info:
            action()
        assert info.value.path == path and words in str(info.value)
        assert "Cannot operate on a closed database" in str(info.value)


def test_a_failure_inside_a_transaction_rolls_it_back(tmp_path: Path) -> None:
    import sqlite3

    j = SqliteJournal(tmp_path / "j.db")
    real = j._db

    class Failing:
        def execute(self, sql: str, *args: object) -> sqlite3.Cursor:
            if sql.lstrip().startswith(("SELECT", "UPDATE")):
                raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

    j.save(record("a"), owner_id("other"), 1.0)
    j._db = Failing()  # type: ignore[assignment]
    with pytest.raises(JournalError, match="cannot save a record"):
        j.begin(record("b"))
    with pytest.raises(JournalError, match="cannot claim records"):
        j.claim(owner_id("me"), 100.0, now=10.0)
    assert not real.in_transaction  # rolled back: the journal is usable again
    j._db = real
    j.save(record("c"))
    assert [r.idempotency_key for r in j.pending()] == ["a", "c"]
