"""The durable outbox: a SQLite file of encoded (signed) records waiting for Kafka's ack.

Rows are appended in one fsync'd transaction per publish call and deleted only after the
broker acknowledged them, in rowid order. Records are stored already signed, so a later key
rotation does not change what a queued event says.
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

__all__ = ["Outbox", "OutboxRow"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL,
    record_key BLOB NOT NULL,
    record_value BLOB NOT NULL,
    headers TEXT NOT NULL
)
"""


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
            db.execute(_SCHEMA)
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

    def delete(self, seqs: Iterable[int]) -> None:
        params = [(s,) for s in seqs]
        if not params:
            return
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("DELETE FROM outbox WHERE seq = ?", params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

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
