"""Durable record of the token ids already published, so redeliveries publish once.

Transmitters redeliver a SET until it is acknowledged (RFC 8935/8936), including after our own
restarts, so the record lives in SQLite. Rows older than ``retention`` are pruned: no
transmitter redelivers for weeks. Each call opens its own connection (cheap, and SQLite does
the locking), so no Python lock is held during disk I/O.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path

from receiver._errors import DeliveryUnavailable

__all__ = ["DedupeStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS delivered (
    namespace TEXT NOT NULL,
    jti TEXT NOT NULL,
    delivered_at REAL NOT NULL,
    PRIMARY KEY (namespace, jti)
) WITHOUT ROWID
"""
_PRUNE_EVERY = 3600.0


class DedupeStore:
    """``(namespace, jti)`` pairs already delivered; ``namespace`` is e.g. ``set:<iss>``.

    An SQLite failure (locked past the timeout, disk full, corrupt file) raises
    :class:`DeliveryUnavailable`: without the record we cannot tell a first delivery from a
    redelivery, so the transmitter is asked to try again rather than told anything final.
    """

    def __init__(self, path: Path, *, retention: float, clock: Callable[[], datetime]) -> None:
        self._path = path
        self._retention = retention
        self._clock = clock
        self._lock = threading.Lock()
        self._pruned_at: float | None = None
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def seen(self, namespace: str, jti: str) -> bool:
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM delivered WHERE namespace = ? AND jti = ?", (namespace, jti)
            ).fetchone()
        return row is not None

    def record(self, namespace: str, jti: str) -> None:
        now = self._clock().timestamp()
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO delivered (namespace, jti, delivered_at) VALUES (?, ?, ?)",
                (namespace, jti, now),
            )
            if self._prune_due(now):
                db.execute("DELETE FROM delivered WHERE delivered_at < ?", (now - self._retention,))

    def _prune_due(self, now: float) -> bool:
        with self._lock:
            if self._pruned_at is not None and now - self._pruned_at < _PRUNE_EVERY:
                return False
            self._pruned_at = now
            return True

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            with closing(sqlite3.connect(self._path, timeout=10.0)) as db, db:
                yield db
        except sqlite3.Error as exc:
            raise DeliveryUnavailable(f"dedupe store failed: {type(exc).__name__}") from exc
