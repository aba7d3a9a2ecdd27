"""An open-addressing set of 64-bit fingerprints with a deadline and a time per entry.

Revoked ``jti`` values are the bulk of the state (one per revoked token), so they live in
flat arrays instead of Python objects, laid out as CPython's own dict is: a sparse index of
4-byte positions, probed linearly, and dense entry arrays (8-byte fingerprint, 4-byte
deadline, 4-byte time) with no empty slots. The index is kept at a load factor of at most a
quarter: a miss, the common case of a request, then ends after ~1.2 probes (~2.5 at one
half, ~8.5 at three quarters), which pays for the extra read of a position per probe. That
costs 16 bytes per entry plus 16 to 32 bytes of index (~38 bytes at 100k entries, ~34 at
1M), where the previous single table of 16-byte slots at one half plus a time wheel of
fingerprints cost 44 to 53 and a ``set`` of ints ~70.

Expiry needs no per-entry bookkeeping: :meth:`FingerprintTable.sweep` walks the dense
deadlines, a bounded number per call (all of them in a small table), and every rebuild
drops the entries already due. Readers compare the deadline themselves, so an entry the
sweep has not reached yet changes no answer; it only still counts in ``len()``.

Concurrency: one writer (the sync thread), any number of lock-free readers. A reader takes
the ``slots`` tuple once. The writer fills an entry (times before key) before an index slot
points at it; a deleted entry's index slot becomes a tombstone (it points at the dummy
entry :data:`DEAD`, whose key 0 matches no fingerprint) and its dense position is reused by
a later insert. A reader that raced a deletion either misses the key or reads a newer
entry's deadline, both only for an entry already past its deadline, so it never un-revokes
a live one. Rebuilds fill new arrays and swap in a whole new tuple, so a reader never sees a
torn entry. Item reads and writes on :class:`array.array` are atomic under the GIL, and the
dense arrays only ever grow in place (``append``) between rebuilds.

Growing when the dense arrays hold no hole and nothing due (the usual case while a log is
replayed) builds a new index only, over the same dense arrays: a reader still holding the
old index reaches only entries that existed when it was built, through positions that a
later deletion and reuse change exactly as they change them under the current index.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

__all__ = ["DEAD", "EMPTY", "FingerprintTable", "Slots", "fingerprint"]

EMPTY = 0  # index slot never used: ends a probe
DEAD = 1  # index slot of a deleted entry: points at dummy entry 1, which matches nothing
_FIRST = 2  # dense positions 0 and 1 are dummies (key 0; hash() or 1 is never 0)
_U32_MAX = 2**32 - 1
_MIN_CAPACITY = 64
SWEEP_MIN = 1 << 16
"""A table with at most this many dense positions is swept whole by every :meth:`sweep`."""
SWEEP_CALLS = 8
"""A larger one is swept whole within this many calls (4 minutes at the default 30 s)."""

Slots = tuple["array[int]", "array[int]", "array[int]", "array[int]", int]
"""(index of dense positions, fingerprints, deadlines in whole seconds, times in whole
seconds, index mask)."""


def fingerprint(value: str) -> int:
    """The per-process SipHash of ``value``; 0 is reserved for dummy entries."""
    return hash(value) or 1


def _capacity(used: int) -> int:
    """The index size a rebuild picks for ``used`` entries: load factor below a quarter."""
    capacity = _MIN_CAPACITY
    while capacity <= used * 4 + 16:
        capacity *= 2
    return capacity


def _new_slots(capacity: int, entries: int) -> Slots:
    """An empty index of ``capacity`` slots and dense arrays with room for ``entries``
    (preallocated, then truncated, so a known size is not over-allocated by ``append``)."""
    keys = array("q", bytes(8 * (_FIRST + entries)))
    deadlines = array("I", bytes(4 * (_FIRST + entries)))
    times = array("I", bytes(4 * (_FIRST + entries)))
    return array("I", bytes(4 * capacity)), keys, deadlines, times, capacity - 1


class FingerprintTable:
    """Fingerprint -> (deadline, time); deadlines are rounded up, times down, to seconds."""

    def __init__(self) -> None:
        self.slots: Slots = _new_slots(_MIN_CAPACITY, 0)
        self.used = 0
        """Entries (``len()``, as an attribute: a reader skips hashing when it is 0). Raised
        after :meth:`add` publishes an entry, lowered after :meth:`sweep` unlinks one; a
        rebuild drops only entries already due. So a reader that sees 0 misses only entries
        past their deadline or not yet published: the answer of the state before or after."""
        self._filled = 0  # index slots used + tombstones
        self._free = array("I")  # dense positions of deleted entries, reused first
        self._cursor = _FIRST  # where the next sweep starts

    def __len__(self) -> int:
        return self.used

    @property
    def capacity(self) -> int:
        """Index slots (the load factor is ``len(self) / capacity``)."""
        return self.slots[4] + 1

    def get(self, fp: int) -> tuple[int, int] | None:
        index, keys, deadlines, times, mask = self.slots
        i = fp & mask
        while j := index[i]:
            if keys[j] == fp:
                return deadlines[j], times[j]
            i = (i + 1) & mask
        return None

    def add(self, fp: int, deadline: float, at: float, cutoff: float = -1.0) -> bool:
        """Insert or merge (latest deadline, earliest time); return whether anything changed.

        An entry with a deadline at or before ``cutoff`` counts as gone, whether or not a
        sweep has reached it yet: it is replaced, not merged with, so the result does not
        depend on when expiry ran. A rebuild this triggers drops all such entries.
        """
        whole = int(deadline)  # rounding up, inlined: this runs once per replayed jti
        dl = whole + (deadline > whole)
        t = int(at)
        # Clamped to the u32 range (an event dated before 1970 must not raise); compared
        # first, as min(max()) costs two builtin calls per value on every replayed jti.
        if not 0 <= dl <= _U32_MAX:
            dl = 0 if dl < 0 else _U32_MAX
        if not 0 <= t <= _U32_MAX:
            t = 0 if t < 0 else _U32_MAX
        index, keys, deadlines, times, mask = self.slots
        i = fp & mask
        free = -1
        while j := index[i]:
            if keys[j] == fp:
                if deadlines[j] <= cutoff:  # expired: a new revocation, not a merge
                    times[j] = t  # time first: a reader seeing the new deadline sees it too
                    deadlines[j] = dl
                    return True
                changed = False
                if dl > deadlines[j]:
                    deadlines[j] = dl
                    changed = True
                if t < times[j]:
                    times[j] = t
                    changed = True
                return changed
            if j == DEAD and free < 0:
                free = i
            i = (i + 1) & mask
        if free < 0:
            free = i
            self._filled += 1
        if self._free:
            j = self._free.pop()
            deadlines[j] = dl
            times[j] = t
            keys[j] = fp
        else:
            j = len(keys)
            deadlines.append(dl)
            times.append(t)
            keys.append(fp)
        index[free] = j  # published last: the entry is complete before a reader can reach it
        self.used += 1
        if self._filled * 4 > mask + 1:
            self._grow(cutoff)
        return True

    def sweep(self, cutoff: float, budget: int | None = None) -> int:
        """Drop entries with a deadline at or before ``cutoff`` among the next ``budget``
        dense positions (default: all of them up to :data:`SWEEP_MIN`, else a
        :data:`SWEEP_CALLS`-th), wrapping around; return how many were dropped (entries a
        rebuild dropped as due are not counted)."""
        index, keys, deadlines, times, mask = self.slots
        end = len(keys)
        if budget is None:
            budget = max(SWEEP_MIN, -(-(end - _FIRST) // SWEEP_CALLS))
        dropped = 0
        j = self._cursor if self._cursor < end else _FIRST
        for _ in range(min(budget, end - _FIRST)):
            if deadlines[j] <= cutoff and (fp := keys[j]):
                i = fp & mask
                while index[i] != j:
                    i = (i + 1) & mask
                index[i] = DEAD
                keys[j] = EMPTY
                deadlines[j] = 0
                times[j] = 0
                self._free.append(j)
                self.used -= 1
                dropped += 1
            j += 1
            if j == end:
                j = _FIRST
        self._cursor = j
        return dropped

    def items(self) -> Iterator[tuple[int, int, int]]:
        _, keys, deadlines, times, _ = self.slots
        for j in range(_FIRST, len(keys)):
            if k := keys[j]:
                yield k, deadlines[j], times[j]

    def bulk_load(
        self,
        fps: Iterable[int],
        deadlines: Iterable[int],
        times: Iterable[int],
        count: int,
        cutoff: float = -1.0,
    ) -> int:
        """Merge ``count`` entries (whole seconds, as :meth:`items` yields) in one rebuild;
        return how many had a deadline after ``cutoff`` (the others, here or incoming, go).

        For a snapshot: the table is sized once for the final count, filled, and swapped in
        whole, so lock-free readers see either the old table or the complete new one. A
        fingerprint already present merges as :meth:`add` does.
        """
        return self._rebuild(
            self.used + count, zip(fps, deadlines, times, strict=True), cutoff=cutoff
        )

    def _grow(self, cutoff: float) -> None:
        """:meth:`_rebuild` for :meth:`add`; with no hole (no free position) and nothing due
        after ``cutoff`` it would copy the dense arrays unchanged, so only the index is
        rebuilt, at a third of the cost per entry."""
        _, keys, deadlines, times, _ = self.slots
        if self._free or min(deadlines[_FIRST:], default=_U32_MAX) <= cutoff:
            self._rebuild(self.used, cutoff=cutoff)
            return
        capacity = _capacity(self.used)
        index = array("I", bytes(4 * capacity))
        mask = capacity - 1
        for j, fp in enumerate(keys[_FIRST:], _FIRST):
            i = fp & mask
            while index[i]:
                i = (i + 1) & mask
            index[i] = j
        self._filled = self.used
        self._cursor = _FIRST  # as after a rebuild: nothing is due
        self.slots = index, keys, deadlines, times, mask

    def _rebuild(
        self, expected: int, extra: Iterable[tuple[int, int, int]] = (), cutoff: float = -1.0
    ) -> int:
        """Compact the entries due after ``cutoff`` (and merge ``extra``) into new arrays,
        swapped in whole; return how many of ``extra`` were kept."""
        new = _new_slots(_capacity(expected), expected)
        index, keys, deadlines, times, mask = new
        j = _FIRST
        kept = 0
        for source, merge in ((self.items(), False), (extra, True)):
            for fp, dl, t in source:
                if dl <= cutoff:
                    continue
                kept += merge
                i = fp & mask
                while p := index[i]:
                    if merge and keys[p] == fp:
                        if dl > deadlines[p]:
                            deadlines[p] = dl
                        if t < times[p]:
                            times[p] = t
                        break
                    i = (i + 1) & mask
                else:
                    deadlines[j] = dl
                    times[j] = t
                    keys[j] = fp
                    index[i] = j
                    j += 1
        del keys[j:], deadlines[j:], times[j:]
        self.used = self._filled = j - _FIRST
        self._free = array("I")
        self._cursor = _FIRST  # everything due was just dropped: a sweep may start over
        self.slots = new
        return kept
