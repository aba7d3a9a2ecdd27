"""An open-addressing set of 64-bit fingerprints with a deadline and a time per entry.

Revoked ``jti`` values are the bulk of the state (one per revoked token), so they live in
three flat arrays instead of Python objects: 16 bytes per slot at a load factor of at most
one half, about 33 bytes per entry, where a ``set`` of ints costs ~70.

Concurrency: one writer (the sync thread), any number of lock-free readers. A reader takes
the ``slots`` tuple once; the writer fills a slot's times before its key, turns deleted keys
into tombstones, and swaps in a whole new tuple when it rebuilds, so a reader never sees a
torn entry. Item reads and writes on :class:`array.array` are atomic under the GIL.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator

__all__ = ["EMPTY", "TOMBSTONE", "FingerprintTable", "Slots", "fingerprint"]

EMPTY = 0
TOMBSTONE = -1  # hash() never returns -1, so no real fingerprint collides with it.
_U32_MAX = 2**32 - 1
_MIN_CAPACITY = 64

Slots = tuple["array[int]", "array[int]", "array[int]", int]
"""(fingerprints, deadlines in whole seconds, times in whole seconds, mask)."""


def fingerprint(value: str) -> int:
    """The per-process SipHash of ``value``; 0 is reserved for empty slots."""
    return hash(value) or 1


def _u32(seconds: float) -> int:
    whole = int(seconds) + (seconds > int(seconds))
    return min(max(whole, 0), _U32_MAX)


def _empty_slots(capacity: int) -> Slots:
    return (
        array("q", bytes(8 * capacity)),
        array("I", bytes(4 * capacity)),
        array("I", bytes(4 * capacity)),
        capacity - 1,
    )


class FingerprintTable:
    """Fingerprint -> (deadline, time); deadlines are rounded up, times down, to seconds."""

    def __init__(self) -> None:
        self.slots: Slots = _empty_slots(_MIN_CAPACITY)
        self._used = 0
        self._filled = 0  # used + tombstones

    def __len__(self) -> int:
        return self._used

    @property
    def capacity(self) -> int:
        return self.slots[3] + 1

    def get(self, fp: int) -> tuple[int, int] | None:
        keys, deadlines, times, mask = self.slots
        i = fp & mask
        while k := keys[i]:
            if k == fp:
                return deadlines[i], times[i]
            i = (i + 1) & mask
        return None

    def add(self, fp: int, deadline: float, at: float) -> bool:
        """Insert or merge (latest deadline, earliest time); return whether anything changed."""
        whole = int(deadline)  # _u32(deadline), inlined: this runs once per replayed jti
        dl = min(max(whole + (deadline > whole), 0), _U32_MAX)
        t = min(int(at), _U32_MAX)
        keys, deadlines, times, mask = self.slots
        i = fp & mask
        free = -1
        while k := keys[i]:
            if k == fp:
                changed = False
                if dl > deadlines[i]:
                    deadlines[i] = dl
                    changed = True
                if t < times[i]:
                    times[i] = t
                    changed = True
                return changed
            if k == TOMBSTONE and free < 0:
                free = i
            i = (i + 1) & mask
        if free < 0:
            free = i
            self._filled += 1
        deadlines[free] = dl
        times[free] = t
        keys[free] = fp
        self._used += 1
        if self._filled * 2 > mask + 1:
            self._rebuild()
        return True

    def discard_if_due(self, fp: int, cutoff: float) -> bool:
        """Remove ``fp`` if its deadline is at or before ``cutoff``."""
        keys, deadlines, times, mask = self.slots
        i = fp & mask
        while k := keys[i]:
            if k == fp:
                if deadlines[i] > cutoff:
                    return False
                keys[i] = TOMBSTONE
                deadlines[i] = 0
                times[i] = 0
                self._used -= 1
                return True
            i = (i + 1) & mask
        return False

    def items(self) -> Iterator[tuple[int, int, int]]:
        keys, deadlines, times, _ = self.slots
        for i, k in enumerate(keys):
            if k not in (EMPTY, TOMBSTONE):
                yield k, deadlines[i], times[i]

    def _rebuild(self) -> None:
        capacity = _MIN_CAPACITY
        while capacity <= self._used * 2 + 16:
            capacity *= 2
        new = _empty_slots(capacity)
        keys, deadlines, times, mask = new
        for fp, dl, t in self.items():
            i = fp & mask
            while keys[i]:
                i = (i + 1) & mask
            deadlines[i] = dl
            times[i] = t
            keys[i] = fp
        self._filled = self._used
        self.slots = new
