"""Crash-recovery journals: where pending operations wait until they are final.

A flow saves a :class:`~payflow.core.messages.PendingRecord` *before* a
creating call is sent, updates it as it learns more (the payment id, "gave
up: recheck later") and forgets it when the outcome is final and the caller has
it (Laybuy's "Power Failure/Crash Recovery" rules). ``recover()`` on start-up
settles whatever is left.

Two journals share one interface:

:class:`SqliteJournal`
    durable: one SQLite file in WAL mode, ``synchronous=FULL`` by default, one
    table keyed by idempotency key. Several processes may share the file.
:class:`MemoryJournal`
    the same in a dict (simulations, tests, or a client without a path).

Several processes sharing one journal must not settle the same record twice.
Each record carries an ``owner`` and a ``lease_until`` (wall-clock seconds):
the process running an operation owns its record while the lease lasts.
:meth:`SqliteJournal.claim` takes, in one ``BEGIN IMMEDIATE`` transaction, every
record that nobody owns, whose lease ran out, or whose owner process is dead
(same host, pid gone) -- so exactly one process recovers each record.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from payflow.core.messages import PendingRecord
from payflow.errors import JournalError

__all__ = [
    "Journal",
    "JournalEntry",
    "MemoryJournal",
    "SqliteJournal",
    "leased_elsewhere",
    "owner_alive",
    "owner_id",
]

_HOST = socket.gethostname()


def owner_id(instance: str) -> str:
    """The owner name of a client instance in this process: ``host:pid:instance``."""
    return f"{_HOST}:{os.getpid()}:{instance}"


def owner_alive(owner: str) -> bool:
    """False only if ``owner`` is certainly dead: a process on this host that has exited.

    Owners on other hosts, or in this very process, count as alive; their
    records are claimed when their lease runs out.
    """
    host, _, rest = owner.partition(":")
    pid_text, _, _ = rest.partition(":")
    if host != _HOST or not pid_text.isdigit():
        return True
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. PermissionError: it exists, under another user
        return True
    return True


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """A record with its bookkeeping: who owns it, until when, and when it was first saved."""

    record: PendingRecord
    owner: str | None
    lease_until: float
    saved_at: float


def _same(a: JournalEntry, b: JournalEntry) -> bool:
    """The same record in the same hands: what a compare-and-delete compares."""
    return (
        a.record.state == b.record.state
        and a.record.payment_id == b.record.payment_id
        and a.owner == b.owner
        and a.lease_until == b.lease_until
    )


def _claimable(entry: JournalEntry, owner: str, now: float, alive: Callable[[str], bool]) -> bool:
    if entry.owner is None or entry.lease_until <= now:
        return True
    if entry.owner == owner:
        # Our own records: those we gave up on or reported, not a payment in progress.
        return entry.record.state != "pending"
    return not alive(entry.owner)


def leased_elsewhere(
    entry: JournalEntry,
    owner: str,
    *,
    now: float | None = None,
    alive: Callable[[str], bool] = owner_alive,
) -> bool:
    """True if a live owner other than ``owner`` holds ``entry`` under an unexpired lease.

    Such a record is being worked on elsewhere (a payment in progress, a
    recheck): only that owner may forget it.
    """
    if entry.owner is None or entry.owner == owner:
        return False
    at = time.time() if now is None else now
    return entry.lease_until > at and alive(entry.owner)


class Journal(Protocol):
    """What a client needs from a journal (both journals here implement it)."""

    def save(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> None:
        """Insert or replace the record kept under ``record.idempotency_key``."""

    def begin(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> JournalEntry | None:
        """Save a new payment's first record unless its order already has a payment
        record; atomically. Returns the record in the way (nothing saved), or ``None``.

        A duck-typed journal without it still works: the client then saves with
        :meth:`save`, without the one-payment-per-order guard.
        """

    def forget(self, idempotency_key: str) -> None:
        """Remove the record (no error if it is gone already)."""

    def forget_unchanged(self, entry: JournalEntry) -> bool:
        """Remove ``entry``'s record only if it is still as read: same state, owner
        and lease (compare-and-delete); True if it was removed.

        A duck-typed journal without it still works: ``acknowledge`` then falls
        back to :meth:`forget`, without the protection against a claim made
        between its read and its delete.
        """

    def pending(self) -> list[PendingRecord]:
        """Every record, oldest first."""

    def entries(self) -> list[JournalEntry]:
        """Every record with its owner and lease, oldest first."""

    def claim(
        self, owner: str, lease_until: float, *, now: float | None = None
    ) -> list[PendingRecord]:
        """Atomically take every claimable record for ``owner`` (see the module doc)."""

    def release(self, keys: Iterable[str], owner: str) -> None:
        """End ``owner``'s lease on ``keys`` so the next ``claim`` takes them at once."""

    def close(self) -> None:
        """Release resources; the journal is unusable afterwards."""


class MemoryJournal:
    """A journal in a dict: same interface as :class:`SqliteJournal`, no durability."""

    def __init__(self, *, alive: Callable[[str], bool] = owner_alive) -> None:
        self._rows: dict[str, JournalEntry] = {}
        self._lock = threading.Lock()
        self._alive = alive
        self._clock = 0.0

    def __repr__(self) -> str:
        return f"MemoryJournal(records={len(self._rows)})"

    @property
    def alive(self) -> Callable[[str], bool]:
        """How this journal tells whether an owner is still running."""
        return self._alive

    def __len__(self) -> int:
        return len(self._rows)

    def save(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> None:
        """Insert or replace the record kept under ``record.idempotency_key``."""
        key = record.idempotency_key
        with self._lock:
            old = self._rows.get(key)
            if old is None:
                self._clock += 1.0
                saved_at = self._clock
                self._rows[key] = JournalEntry(record, owner, lease_until, saved_at)
            else:
                self._rows[key] = JournalEntry(record, owner, lease_until, old.saved_at)

    def begin(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> JournalEntry | None:
        """Save a new payment's first record unless its order has one already (atomic)."""
        with self._lock:
            for entry in self._rows.values():
                if entry.record.operation == "pay" and entry.record.reference == record.reference:
                    return entry
            self._clock += 1.0
            self._rows[record.idempotency_key] = JournalEntry(
                record, owner, lease_until, self._clock
            )
            return None

    def forget(self, idempotency_key: str) -> None:
        """Remove the record (no error if it is gone already)."""
        with self._lock:
            self._rows.pop(idempotency_key, None)

    def forget_unchanged(self, entry: JournalEntry) -> bool:
        """Remove ``entry``'s record only if it is still as read (compare-and-delete)."""
        key = entry.record.idempotency_key
        with self._lock:
            now = self._rows.get(key)
            if now is None or not _same(now, entry):
                return False
            del self._rows[key]
            return True

    def entries(self) -> list[JournalEntry]:
        """Every record with its owner and lease, oldest first."""
        with self._lock:
            return sorted(self._rows.values(), key=lambda e: e.saved_at)

    def pending(self) -> list[PendingRecord]:
        """Every record, oldest first."""
        return [e.record for e in self.entries()]

    def claim(
        self, owner: str, lease_until: float, *, now: float | None = None
    ) -> list[PendingRecord]:
        """Atomically take every claimable record for ``owner``."""
        at = time.time() if now is None else now
        with self._lock:
            taken = []
            for key, entry in sorted(self._rows.items(), key=lambda kv: kv[1].saved_at):
                if _claimable(entry, owner, at, self._alive):
                    self._rows[key] = JournalEntry(entry.record, owner, lease_until, entry.saved_at)
                    taken.append(entry.record)
            return taken

    def release(self, keys: Iterable[str], owner: str) -> None:
        """End ``owner``'s lease on ``keys``."""
        with self._lock:
            for key in keys:
                entry = self._rows.get(key)
                if entry is not None and entry.owner == owner:
                    self._rows[key] = JournalEntry(entry.record, owner, 0.0, entry.saved_at)

    def close(self) -> None:
        """Nothing to release."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    idempotency_key TEXT PRIMARY KEY,
    reference       TEXT NOT NULL,
    operation       TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    created_at      REAL NOT NULL,
    payment_id      TEXT,
    state           TEXT NOT NULL,
    key_sent        INTEGER NOT NULL,
    saved_at        REAL NOT NULL,
    owner           TEXT,
    lease_until     REAL NOT NULL DEFAULT 0
)
"""
_COLUMNS = (
    "idempotency_key, reference, operation, amount, currency, created_at, payment_id, "
    "state, key_sent, saved_at, owner, lease_until"
)
_UPSERT = f"""
INSERT INTO pending ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(idempotency_key) DO UPDATE SET
    reference = excluded.reference, operation = excluded.operation,
    amount = excluded.amount, currency = excluded.currency,
    created_at = excluded.created_at, payment_id = excluded.payment_id,
    state = excluded.state, key_sent = excluded.key_sent,
    owner = excluded.owner, lease_until = excluded.lease_until
"""
_SELECT = f"SELECT {_COLUMNS} FROM pending ORDER BY saved_at, rowid"
_SCHEMA_VERSION = 1
_SYNC_MODES = ("OFF", "NORMAL", "FULL", "EXTRA")


def _row(r: PendingRecord, owner: str | None, lease_until: float) -> tuple[Any, ...]:
    """The table row of a record saved now (the columns of ``_COLUMNS``)."""
    return (
        r.idempotency_key, r.reference, r.operation, r.amount, r.currency, r.created_at,
        r.payment_id, r.state, int(r.key_sent), time.time(), owner, lease_until,
    )  # fmt: skip


def _entry(row: tuple[Any, ...]) -> JournalEntry:
    key, ref, op, amount, currency, created, pid, state, sent, saved, owner, lease = row
    record = PendingRecord(
        str(ref), str(key), str(op), int(amount), str(currency), float(created),
        None if pid is None else str(pid), str(state), bool(sent),
    )  # fmt: skip
    return JournalEntry(record, None if owner is None else str(owner), float(lease), float(saved))


class SqliteJournal:
    """A durable journal in one SQLite file (WAL mode).

    ``synchronous`` is SQLite's ``PRAGMA synchronous``: ``"FULL"`` (the
    default) makes every save durable across a power cut before the request
    goes out; ``"NORMAL"`` is faster and survives a process crash but may lose
    the last writes on a power cut. ``timeout`` is how long (seconds) to wait
    for another process holding the write lock.

    Raises :class:`~payflow.errors.JournalError` naming the path when the file
    cannot be opened or is not a payflow journal.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        synchronous: str = "FULL",
        *,
        timeout: float = 30.0,
        alive: Callable[[str], bool] = owner_alive,
    ) -> None:
        self.path = os.fspath(path)
        mode = str(synchronous).upper()
        if mode not in _SYNC_MODES:
            raise ValueError(
                f"synchronous: must be one of {', '.join(_SYNC_MODES)}, got {synchronous!r}"
            )
        self.synchronous = mode
        self._alive = alive
        self._lock = threading.Lock()
        if self.path != ":memory:" and os.path.isdir(self.path):
            raise JournalError(self.path, "is a directory, not a journal file")
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise JournalError(self.path, f"cannot open ({exc})") from None
        try:
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL").fetchone()
            self._db.execute(f"PRAGMA synchronous = {mode}")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, _SCHEMA_VERSION):
                raise JournalError(self.path, f"unknown journal schema version {version}")
            self._db.execute(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(pending)")}
            missing = {c.strip() for c in _COLUMNS.split(",")} - columns
            if missing:
                raise JournalError(
                    self.path, f"not a payflow journal (missing columns {sorted(missing)})"
                )
            if version == 0:
                self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalError(self.path, f"not a usable journal ({exc})") from None
        except JournalError:
            self._db.close()
            raise

    def __repr__(self) -> str:
        return f"SqliteJournal({self.path!r}, synchronous={self.synchronous!r})"

    @property
    def alive(self) -> Callable[[str], bool]:
        """How this journal tells whether an owner is still running."""
        return self._alive

    @contextmanager
    def _transaction(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: every other writer, in this process or
        another, waits until it commits; anything raised inside rolls it back. An SQLite
        failure becomes a :class:`JournalError` naming ``action``."""
        try:
            with self._lock:
                db = self._db
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
        except sqlite3.Error as exc:
            raise self._fail(action, exc) from None

    def _fail(self, action: str, exc: sqlite3.Error) -> JournalError:
        return JournalError(self.path, f"cannot {action} ({exc})")

    def save(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> None:
        """Insert or replace the record kept under ``record.idempotency_key``; durable on return."""
        row = _row(record, owner, lease_until)
        try:
            with self._lock:
                self._db.execute(_UPSERT, row)
        except sqlite3.Error as exc:
            raise self._fail("save a record", exc) from None

    def begin(
        self, record: PendingRecord, owner: str | None = None, lease_until: float = 0.0
    ) -> JournalEntry | None:
        """Save a new payment's first record unless its order has one already.

        One ``BEGIN IMMEDIATE`` transaction: two processes paying the same order
        at once cannot both pass the check. Durable on return, like :meth:`save`.
        """
        r = record
        row = _row(r, owner, lease_until)
        with self._transaction("save a record") as db:
            found = db.execute(
                f"SELECT {_COLUMNS} FROM pending WHERE operation = 'pay' "
                "AND reference = ? LIMIT 1",
                (r.reference,),
            ).fetchone()
            if found is None:
                db.execute(_UPSERT, row)
        return None if found is None else _entry(found)

    def forget(self, idempotency_key: str) -> None:
        """Remove the record (no error if it is gone already)."""
        try:
            with self._lock:
                self._db.execute(
                    "DELETE FROM pending WHERE idempotency_key = ?", (idempotency_key,)
                )
        except sqlite3.Error as exc:
            raise self._fail("forget a record", exc) from None

    def forget_unchanged(self, entry: JournalEntry) -> bool:
        """Remove ``entry``'s record only if it is still as read (compare-and-delete).

        One ``DELETE ... WHERE`` on the state, owner and lease that were read: a
        process that claimed the record in between (a new lease) keeps it.
        """
        r = entry.record
        try:
            with self._lock:
                cursor = self._db.execute(
                    "DELETE FROM pending WHERE idempotency_key = ? AND state = ? "
                    "AND payment_id IS ? AND owner IS ? AND lease_until = ?",
                    (r.idempotency_key, r.state, r.payment_id, entry.owner, entry.lease_until),
                )
        except sqlite3.Error as exc:
            raise self._fail("forget a record", exc) from None
        return cursor.rowcount == 1

    def entries(self) -> list[JournalEntry]:
        """Every record with its owner and lease, oldest first."""
        try:
            with self._lock:
                rows = self._db.execute(_SELECT).fetchall()
        except sqlite3.Error as exc:
            raise self._fail("read", exc) from None
        return [_entry(row) for row in rows]

    def pending(self) -> list[PendingRecord]:
        """Every record, oldest first."""
        return [e.record for e in self.entries()]

    def claim(
        self, owner: str, lease_until: float, *, now: float | None = None
    ) -> list[PendingRecord]:
        """Take every claimable record for ``owner`` in one ``BEGIN IMMEDIATE`` transaction.

        While one process claims, every other writer waits, so no record is
        handed to two processes.
        """
        at = time.time() if now is None else now
        with self._transaction("claim records") as db:
            entries = [_entry(row) for row in db.execute(_SELECT).fetchall()]
            taken = [e for e in entries if _claimable(e, owner, at, self._alive)]
            db.executemany(
                "UPDATE pending SET owner = ?, lease_until = ? WHERE idempotency_key = ?",
                [(owner, lease_until, e.record.idempotency_key) for e in taken],
            )
        return [e.record for e in taken]

    def release(self, keys: Iterable[str], owner: str) -> None:
        """End ``owner``'s lease on ``keys`` so the next ``claim`` takes them at once."""
        params = [(key, owner) for key in keys]
        if not params:
            return
        try:
            with self._lock:
                self._db.executemany(
                    "UPDATE pending SET lease_until = 0 WHERE idempotency_key = ? AND owner = ?",
                    params,
                )
        except sqlite3.Error as exc:
            raise self._fail("release records", exc) from None

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()
