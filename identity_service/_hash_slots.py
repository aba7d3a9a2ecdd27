"""A bound on the password hashes running at once.

Each scrypt at the default cost holds 128 MiB for ~0.5 s, and FastAPI runs up to 40 sync
requests in parallel threads: unbounded, a burst of logins (each one allowed by the throttle,
which counts per username and per client, not overall) would need ~5 GiB and get the service
OOM-killed. The hasher is reachable only through a slot, so every hash, at login, password
change, re-hash, seeding and the decoy for unknown names, takes one. A request holds one slot
for all its hashes: they run one after another in its thread, so never more than one at a time.

A request that gets no slot within ``wait`` seconds is refused (:class:`NoHashSlot`) rather
than queued: a longer queue only holds more threads and connections for the same throughput.
"""

from __future__ import annotations

import math
import threading
from types import TracebackType

from identity_service._passwords import PasswordHasher

__all__ = ["HashSlot", "HashSlots", "NoHashSlot"]


class NoHashSlot(Exception):
    """Every slot stayed busy for the whole wait; try again in ``retry_after`` whole seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many password hashes in progress")
        self.retry_after = max(1, math.ceil(retry_after))


class HashSlot:
    """A held slot: the hasher, until the ``with`` block ends."""

    def __init__(self, hasher: PasswordHasher, release: threading.BoundedSemaphore) -> None:
        self._hasher = hasher
        self._release = release

    def __enter__(self) -> PasswordHasher:
        return self._hasher

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._release.release()


class HashSlots:
    """``limit`` slots for ``hasher``; :meth:`take` waits at most ``wait`` seconds for one."""

    def __init__(self, hasher: PasswordHasher, *, limit: int, wait: float) -> None:
        if limit < 1 or not (0 <= wait < math.inf):
            raise ValueError(f"need limit >= 1 and a finite wait >= 0, got {limit} and {wait}")
        self._hasher = hasher
        self._free = threading.BoundedSemaphore(limit)
        self._wait = wait

    def take(self) -> HashSlot:
        """A slot, held from now until its ``with`` block ends; :class:`NoHashSlot` if none
        freed within the wait. Use it at once: ``with slots.take() as hasher: ...``."""
        if not self._free.acquire(timeout=self._wait):
            raise NoHashSlot(self._wait)
        return HashSlot(self._hasher, self._free)

    def needs_rehash(self, stored: str) -> bool:
        """The hasher's :meth:`~PasswordHasher.needs_rehash`: it computes no hash."""
        return self._hasher.needs_rehash(stored)
