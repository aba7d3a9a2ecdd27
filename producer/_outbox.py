"""The durable outbox: a SQLite file of encoded (signed) records waiting for Kafka's ack.

Rows are appended in one fsync'd transaction per publish call and deleted only after the
broker acknowledged them, in rowid order. Records are stored already signed, so a later key
rotation does not change what a queued event says.

Several processes may share the file. Beside the rows it holds the drain lease (which process
sends; see :mod:`producer._lease`) and the acks the drainer recorded for rows it did not write
itself, so that the process waiting for them can report where they went.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from producer._errors import PublishError
from revocation_events import EncodedEvent

__all__ = ["ACK_RETENTION", "Outbox", "OutboxRow"]

_SCHEMA = (
    """
    CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        record_key BLOB NOT NULL,
        record_value BLOB NOT NULL,
        headers TEXT NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS drain_lease (
        id INTEGER PRIMARY KEY CHECK (id = 0),
        owner TEXT NOT NULL,
        expires_at REAL NOT NULL
    )
    """,
    """
    CREATE TABLE IF NOT EXISTS acks (
        event_id TEXT PRIMARY KEY,
        partition INTEGER NOT NULL,
        "offset" INTEGER NOT NULL,
        acked_at REAL NOT NULL
    )
    """,
)

ACK_RETENTION = 3600.0
"""Seconds an ack nobody collected stays (its publisher gave up waiting, or died)."""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    seq: int
    event_id: uuid.UUID
    record: EncodedEvent


class Outbox:
    """Thread-safe; one connection serialised by a lock (SQLite allows one writer anyway)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: in WAL mode every commit is fsync'd, so an acknowledged append survives a
            # crash.
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            for statement in _SCHEMA:
                db.execute(statement)
        except (OSError, sqlite3.Error) as exc:
            if db is not None:
                db.close()
            raise PublishError(f"cannot open the outbox {str(path)!r}: {exc}") from exc
        self._db = db

    def append(self, items: Sequence[tuple[uuid.UUID, EncodedEvent]]) -> list[int]:
        """Store records durably, in order; return their sequence numbers.

        Raises :class:`~producer.PublishError` when they cannot be stored (nothing is)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    seqs = [
                        int(
                            self._db.execute(
                                "INSERT INTO outbox (event_id, record_key, record_value, headers)"
                                " VALUES (?, ?, ?, ?)",
                                (str(event_id), rec.key, rec.value, _dump_headers(rec.headers)),
                            ).lastrowid
                            or 0
                        )
                        for event_id, rec in items
                    ]
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise PublishError(
                    f"cannot store events in the outbox {str(self.path)!r}: {exc}"
                ) from exc
        return seqs

    def head(self, limit: int) -> list[OutboxRow]:
        """The oldest pending rows, in publish order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, event_id, record_key, record_value, headers FROM outbox"
                " ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            OutboxRow(
                seq=seq,
                event_id=uuid.UUID(event_id),
                record=EncodedEvent(key=key, value=value, headers=_load_headers(headers)),
            )
            for seq, event_id, key, value, headers in rows
        ]

    def delete(
        self,
        seqs: Iterable[int],
        acks: Sequence[tuple[uuid.UUID, int, int]] = (),
        *,
        now: float = 0.0,
    ) -> None:
        """Delete acknowledged rows; in the same transaction, record ``acks`` (event id,
        partition, offset) acknowledged at ``now`` for the processes waiting for them, and drop
        acks older than :data:`ACK_RETENTION`."""
        params = [(s,) for s in seqs]
        if not params and not acks:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", params)
                if acks:
                    self._db.execute("DELETE FROM acks WHERE acked_at < ?", (now - ACK_RETENTION,))
                    self._db.executemany(
                        'INSERT OR REPLACE INTO acks (event_id, partition, "offset", acked_at)'
                        " VALUES (?, ?, ?, ?)",
                        [(str(event_id), p, o, now) for event_id, p, o in acks],
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def take_acks(self, event_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, tuple[int, int]]:
        """The (partition, offset) another process's drainer recorded for these events, each
        given out once."""
        found: dict[uuid.UUID, tuple[int, int]] = {}
        with self._lock:
            for event_id in event_ids:
                row = self._db.execute(
                    'SELECT partition, "offset" FROM acks WHERE event_id = ?', (str(event_id),)
                ).fetchone()
                if row is not None:
                    found[event_id] = (int(row[0]), int(row[1]))
            if found:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(
                        "DELETE FROM acks WHERE event_id = ?", [(str(e),) for e in found]
                    )
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
        return found

    def claim_lease(self, owner: str, *, now: float, until: float) -> bool:
        """Take or renew the drain lease for ``owner`` until ``until``: only if it is free,
        already ``owner``'s, or expired at ``now``. Under SQLite's write lock, so two processes
        cannot both take it."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT owner, expires_at FROM drain_lease WHERE id = 0"
                ).fetchone()
                taken = row is None or row[0] == owner or row[1] <= now
                if taken:
                    self._db.execute(
                        "INSERT OR REPLACE INTO drain_lease (id, owner, expires_at)"
                        " VALUES (0, ?, ?)",
                        (owner, until),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        return taken

    def lease(self) -> tuple[str, float] | None:
        """The drain lease's (owner, expiry), read without taking the write lock."""
        with self._lock:
            row = self._db.execute(
                "SELECT owner, expires_at FROM drain_lease WHERE id = 0"
            ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def release_lease(self, owner: str) -> None:
        """Give the lease up, if ``owner`` holds it, so another process can take it at once."""
        with self._lock:
            self._db.execute("DELETE FROM drain_lease WHERE id = 0 AND owner = ?", (owner,))

    def data_version(self) -> int:
        """Changes whenever another connection commits to the file (SQLite ``data_version``)."""
        with self._lock:
            (version,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(version)

    def count(self) -> int:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        return int(n)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _dump_headers(headers: Sequence[tuple[str, bytes]]) -> str:
    return json.dumps([[name, value.hex()] for name, value in headers])


def _load_headers(text: str) -> tuple[tuple[str, bytes], ...]:
    return tuple((name, bytes.fromhex(value)) for name, value in json.loads(text))
