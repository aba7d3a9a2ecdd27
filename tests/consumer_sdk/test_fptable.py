"""FingerprintTable against a dict model: inserts, merges, deletions, growth, reuse, bulk loads."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from consumer_sdk._fptable import DEAD, SWEEP_CALLS, SWEEP_MIN, FingerprintTable

# Few distinct low bits: fingerprints collide on the first index slot and chain, so probing,
# tombstones in the middle of a chain and their reuse are exercised, not just direct hits.
FPS = st.sampled_from([1, 2, 3, 64, 65, 128, 129, 2**40 + 1, -(2**63), 2**63 - 1, -2, -64])
SECONDS = st.floats(min_value=0, max_value=2_000, allow_nan=False)


def _ceil(x: float) -> int:
    return math.ceil(x)


class TableMachine(RuleBasedStateMachine):
    """The table must answer exactly as a dict of fingerprint -> (deadline, time)."""

    def __init__(self) -> None:
        super().__init__()
        self.table = FingerprintTable()
        self.model: dict[int, tuple[int, int]] = {}
        self.grown = 0

    @rule(
        fp=FPS | st.integers(min_value=-(2**63), max_value=2**63 - 1).filter(bool),
        deadline=SECONDS,
        at=SECONDS,
    )
    def add(self, fp: int, deadline: float, at: float) -> None:
        if fp == -1:  # hash() never returns -1
            fp = 1
        dl, t = _ceil(deadline), int(at)
        old = self.model.get(fp)
        new = (dl, t) if old is None else (max(old[0], dl), min(old[1], t))
        capacity = self.table.capacity
        assert self.table.add(fp, deadline, at) is (new != old)
        self.model[fp] = new
        self.grown += self.table.capacity != capacity

    @rule(cutoff=SECONDS)
    def sweep_everything(self, cutoff: float) -> None:
        """A full sweep drops exactly the entries due at ``cutoff``."""
        due = [fp for fp, (dl, _) in self.model.items() if dl <= cutoff]
        assert self.table.sweep(cutoff, budget=10**9) == len(due)
        for fp in due:
            del self.model[fp]

    @rule(cutoff=SECONDS, budget=st.integers(0, 20))
    def sweep_a_part(self, cutoff: float, budget: int) -> None:
        """A partial sweep drops only due entries, at most ``budget`` of them."""
        before = {fp for fp, _, _ in self.table.items()}
        dropped = self.table.sweep(cutoff, budget=budget)
        gone = before - {fp for fp, _, _ in self.table.items()}
        assert len(gone) == dropped <= budget
        assert all(self.model[fp][0] <= cutoff for fp in gone), "a live entry was dropped"
        for fp in gone:
            del self.model[fp]

    @rule(fp=FPS, deadline=SECONDS, at=SECONDS, cutoff=SECONDS)
    def add_dropping_due_on_rebuild(
        self, fp: int, deadline: float, at: float, cutoff: float
    ) -> None:
        """As apply calls it: a growth rebuild drops the entries due at ``cutoff``."""
        deadline = max(deadline, cutoff + 1)  # apply never adds an entry already due
        old = self.model.get(fp)
        if old is not None and old[0] <= cutoff:
            old = None  # expired: replaced, not merged
        dl, t = _ceil(deadline), int(at)
        new = (dl, t) if old is None else (max(old[0], dl), min(old[1], t))
        slots = self.table.slots
        assert self.table.add(fp, deadline, at, cutoff) is (new != old)
        self.model[fp] = new
        if self.table.slots is not slots:  # rebuilt: the due ones are gone
            due = [k for k, (d, _) in self.model.items() if d <= cutoff]
            for k in due:
                del self.model[k]

    @rule(n=st.integers(min_value=1, max_value=200), start=st.integers(0, 10**6))
    def add_many(self, n: int, start: int) -> None:
        """Enough distinct keys to force rebuilds (growth) now and then."""
        for fp in range(start * 1000 + 7, start * 1000 + 7 + n):
            self.add(fp, 1_000.0, 5.0)

    @rule(
        entries=st.lists(st.tuples(FPS, st.integers(0, 2_000), st.integers(0, 2_000)), max_size=30),
        cutoff=st.integers(-1, 2_000),
    )
    def bulk_load(self, entries: list[tuple[int, int, int]], cutoff: int) -> None:
        """Entries due at ``cutoff`` are neither loaded nor kept; the rest merge as add."""
        due = [fp for fp, (dl, _) in self.model.items() if dl <= cutoff]
        for fp in due:
            del self.model[fp]
        live = [e for e in entries if e[1] > cutoff]
        for fp, dl, t in live:
            old = self.model.get(fp)
            self.model[fp] = (dl, t) if old is None else (max(old[0], dl), min(old[1], t))
        kept = self.table.bulk_load(
            [e[0] for e in entries],
            [e[1] for e in entries],
            [e[2] for e in entries],
            len(entries),
            cutoff,
        )
        assert kept == len(live)

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert len(self.table) == len(self.model)
        assert sorted(self.table.items()) == sorted((k, *v) for k, v in self.model.items())
        for fp in [*self.model, 4, 2**40 + 65]:
            assert self.table.get(fp) == self.model.get(fp)

    @invariant()
    def index_is_consistent(self) -> None:
        index, keys, _, _, mask = self.table.slots
        assert len(index) == mask + 1
        assert len(self.table) * 4 <= len(index), "load factor above a quarter"
        live = [j for j in index if j > DEAD]
        assert len(live) == len(set(live)) == len(self.table), "one index slot per entry"
        assert all(keys[j] for j in live)


TestTableMachine = TableMachine.TestCase
TestTableMachine.settings = hsettings(max_examples=100, stateful_step_count=40, deadline=None)


def test_a_deleted_entrys_slots_are_reused_and_the_table_does_not_grow() -> None:
    table = FingerprintTable()
    for fp in range(1, 21):
        table.add(fp, 100 if fp <= 10 else 900, 0)
    slots = table.slots
    index, keys, *_ = slots
    sizes = (len(index), len(keys))
    for _ in range(1000):
        assert table.sweep(100) == 10
        for fp in range(1, 11):
            assert table.add(fp, 100, 0)
    assert table.slots is slots, "tombstones were not reused: the table was rebuilt"
    index, keys, *_ = table.slots
    assert (len(index), len(keys)) == sizes
    assert len(table) == 20


def test_growth_keeps_every_entry_and_the_load_factor_below_one_half() -> None:
    table = FingerprintTable()
    for fp in range(1, 10_001):
        table.add(fp * 0x9E3779B97F4A7C15 % 2**63 or 1, fp, fp)
    assert len(table) == 10_000
    assert table.capacity > 4 * len(table)
    assert all(
        table.get(fp * 0x9E3779B97F4A7C15 % 2**63 or 1) == (fp, fp) for fp in range(1, 10_001)
    )


def test_bulk_load_swaps_in_a_new_table_whole() -> None:
    """Lock-free readers hold the old tuple: it must not be filled in place."""
    table = FingerprintTable()
    table.add(5, 10, 1)
    old = table.slots
    assert table.bulk_load([7, 5], [20, 30], [2, 0], 2) == 2
    assert table.slots is not old
    assert table.get(5) == (30, 0)
    assert table.get(7) == (20, 2)
    index = old[0]
    assert sum(1 for j in index if j > DEAD) == 1


@given(st.lists(st.integers(1, 2**62), max_size=300, unique=True))
def test_bulk_load_sizes_exactly_once(fps: list[int]) -> None:
    table = FingerprintTable()
    table.bulk_load(fps, [9] * len(fps), [1] * len(fps), len(fps))
    _, keys, deadlines, times, _ = table.slots
    assert len(keys) == len(deadlines) == len(times) == len(fps) + 2  # 2 dummy entries
    assert sorted(k for k, _, _ in table.items()) == sorted(fps)


def test_a_large_table_is_swept_whole_within_sweep_calls_calls_and_only_of_due_entries() -> None:
    table = FingerprintTable()
    n = SWEEP_MIN * 3
    table.bulk_load(range(1, n + 1), [10 if fp % 3 else 50 for fp in range(1, n + 1)], [0] * n, n)
    dropped = [table.sweep(20) for _ in range(SWEEP_CALLS)]
    assert 0 < dropped[0] <= SWEEP_MIN, "bounded: a large table is not swept in one call"
    assert sum(dropped) == n * 2 // 3
    assert len(table) == n // 3
    assert all(dl == 50 for _, dl, _ in table.items())
    assert table.sweep(20) == 0


def test_a_time_before_1970_is_stored_as_zero_and_keeps_every_deadline_with_its_entry() -> None:
    """A negative time used to raise half-way through an insert, after the deadline was
    appended: every later entry then read the deadline of the one before it."""
    table = FingerprintTable()
    assert table.add(5, 1000, -3600)
    table.add(7, 10, 0)
    table.add(9, 500, 0)
    assert (table.get(5), table.get(7), table.get(9)) == ((1000, 0), (10, 0), (500, 0))
    assert table.sweep(20) == 1
    assert table.get(9) == (500, 0)


@pytest.mark.parametrize(
    ("deadline", "at", "stored"),
    [
        (1000.2, 999.9, (1001, 999)),  # the deadline rounds up, the time down
        (1000.0, 1000.0, (1000, 1000)),
        (-5.5, -3.2, (0, 0)),  # before 1970
        (2.0**32 - 1.5, 2.0**32 - 0.5, (2**32 - 1, 2**32 - 1)),
        (2.0**32 + 5.5, 2.0**33, (2**32 - 1, 2**32 - 1)),  # after 2106: the u32 maximum
    ],
)
def test_deadlines_and_times_are_rounded_and_clamped_to_the_u32_range(
    deadline: float, at: float, stored: tuple[int, int]
) -> None:
    table = FingerprintTable()
    assert table.add(5, deadline, at)
    assert table.get(5) == stored


def _spread(n: int) -> int:
    return n * 0x9E3779B97F4A7C15 % 2**63 or 1


def _grow(table: FingerprintTable, start: int, cutoff: float = -1.0) -> int:
    """Add distinct entries (deadline 100) from ``start`` until the index grows; return the
    next unused number."""
    capacity = table.capacity
    while table.capacity == capacity:
        table.add(_spread(start), 100, 1, cutoff)
        start += 1
    return start


def test_growth_with_no_hole_and_nothing_due_rebuilds_only_the_index() -> None:
    """The replay's usual growth keeps the dense arrays; a reader still holding the old index
    finds every entry it could find before."""
    table = FingerprintTable()
    end = _grow(table, 1)
    old = table.slots
    end = _grow(table, end)
    index, keys, deadlines, times, _ = table.slots
    assert (keys, deadlines, times) == old[1:4]
    assert keys is old[1]
    assert deadlines is old[2]
    assert times is old[3]
    assert index is not old[0]
    assert all(table.get(_spread(n)) == (100, 1) for n in range(1, end))
    reader = FingerprintTable()
    reader.slots = old
    assert sum(reader.get(_spread(n)) == (100, 1) for n in range(1, end)) > len(table) // 2


@pytest.mark.parametrize("hole", ["swept", "due"])
def test_growth_with_a_hole_or_a_due_entry_compacts_into_new_arrays(hole: str) -> None:
    table = FingerprintTable()
    table.add(_spread(0), 10, 1)  # due at cutoff 50
    end = _grow(table, 1)
    old = table.slots
    if hole == "swept":
        assert table.sweep(50) == 1
        table._grow(-1.0)  # as add() does once the index is full: here with a free position
    else:
        _grow(table, end, cutoff=50)
    _, keys, _, _, _ = table.slots
    assert keys is not old[1]
    assert table.get(_spread(0)) is None
    assert all(fp for fp in keys[2:]), "no hole left in the dense arrays"
    assert all(table.get(_spread(n)) == (100, 1) for n in range(1, end))
