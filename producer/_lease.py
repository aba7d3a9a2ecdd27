"""The drain lease: which of the processes sharing an outbox file sends its rows.

Every publisher on a file appends to it, but only the holder of the lease sends, so each row is
sent once and in order even when gunicorn workers, or an old and a new process during a
restart, share one file. The lease is a row in the file (owner, expiry) taken under SQLite's
write lock (``BEGIN IMMEDIATE``); the holder renews it while it drains, gives it up on close,
and a killed holder's lease expires so another process takes over.

The holder asks :meth:`DrainLease.hold` before each batch it sends and stops once it says no.
What it cannot stop is a batch already handed to Kafka: if the holder stalls longer than the
lease in between (GC pause, ``SIGSTOP``, a broker slower than the lease), the next holder may
send that batch again. At most one batch is sent twice that way; consumers apply events
idempotently. Expiry is measured on the wall clock, which processes sharing a file share
(SQLite files are not shared across hosts); a clock step forward that makes a live holder's
lease look expired has the same effect as a stall, and no worse.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable

from producer._outbox import Outbox

__all__ = ["DrainLease"]

log = logging.getLogger("producer")

_RENEW_AFTER = 1 / 3
"""Renew once this fraction of the lease has passed since it was last written."""


class DrainLease:
    """One process's view of an outbox's drain lease. Not thread-safe: the drainer owns it."""

    def __init__(
        self,
        outbox: Outbox,
        *,
        duration: float,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.owner = owner or f"{os.getpid()}-{uuid.uuid4().hex}"
        self._outbox = outbox
        self._duration = duration
        self._clock = clock
        self._written_at: float | None = None  # when this process last wrote its lease

    @property
    def held(self) -> bool:
        """Whether the last :meth:`hold` took or kept the lease (no I/O)."""
        return self._written_at is not None

    def hold(self) -> bool:
        """Take the lease, or keep it, for another full duration; ``False`` while another
        process holds it. Writes to the file at most once a third of the duration."""
        now = self._clock()
        written = self._written_at
        if written is not None and written <= now < written + self._duration * _RENEW_AFTER:
            return True  # nobody may take it before written + duration
        if written is None:
            current = self._outbox.lease()
            if current is not None and current[0] != self.owner and now < current[1]:
                return False  # held elsewhere: no write lock taken to find that out
        if self._outbox.claim_lease(self.owner, now=now, until=now + self._duration):
            self._written_at = now
            return True
        if written is not None:
            log.warning(
                "outbox %s: drain lease lost (this process stalled past it); "
                "another process sends now",
                self._outbox.path,
            )
        self._written_at = None
        return False

    def release(self) -> None:
        """Give the lease up so another process takes over without waiting for it to expire."""
        if self._written_at is not None:
            self._written_at = None
            self._outbox.release_lease(self.owner)
