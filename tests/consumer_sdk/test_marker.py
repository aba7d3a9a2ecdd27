"""Offset markers read back: the parser from hostile bytes, and the tail scan (logic only, on a
fake consumer; tests/consumer_sdk/test_state_bootstrap_kafka.py and the streams worker's tests
cover it against the broker)."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import pytest
from kafka import TopicPartition

from consumer_sdk._marker import Marker, last_markers, read_marker
from streams._records import marker_record

_LOG = "revs"
_STATE = f"{_LOG}.state"
_ID = uuid.UUID("8992b4ef-73f7-4e3a-b980-4c8c10c42e1d")
_KEY = b"__offsets__:2"


def test_a_marker_the_worker_wrote_reads_back_with_its_topic_id() -> None:
    named, bare = marker_record(_LOG, 2, 41, topic_id=_ID), marker_record(_LOG, 2, 41)
    assert read_marker(named.key, named.value, _LOG, 2) == Marker(41, _ID)
    assert read_marker(bare.key, bare.value, _LOG, 2) == Marker(41, None)


@pytest.mark.parametrize(
    ("key", "log", "partition"),
    [(_KEY, "other", 2), (_KEY, _LOG, 1), (b"__offsets__:02", _LOG, 2), (None, _LOG, 2)],
)
def test_a_marker_is_of_one_log_partition_under_its_own_key(
    key: bytes | None, log: str, partition: int
) -> None:
    assert read_marker(key, marker_record(_LOG, 2, 41).value, log, partition) is None


_HOSTILE = [
    None,  # a tombstone
    b"[" * 100_000,  # RecursionError in json: crashed revocast status and the worker
    b"\xff\xfe",
    b"not json",
    b"null",
    b'"revs"',
    b'["revs",2,41]',
    b'{"partition":2,"offset":41}',
    b'{"topic":"revs","partition":2,"offset":Infinity}',  # int(inf): OverflowError
    b'{"topic":"revs","partition":Infinity,"offset":41}',
    b'{"topic":"revs","partition":2.0,"offset":41}',
    b'{"topic":"revs","partition":"2","offset":"41"}',  # was read as 41
    b'{"topic":"revs","partition":true,"offset":41}',
    b'{"topic":"revs","partition":2,"offset":41.9}',  # was read as 41
    b'{"topic":"revs","partition":2,"offset":true}',
    b'{"topic":"revs","partition":2,"offset":-1}',
    b'{"topic":"revs","partition":2,"offset":41,"topic_id":"not-a-uuid"}',
    b'{"topic":"revs","partition":2,"offset":41,"topic_id":""}',
    b'{"topic":"revs","partition":2,"offset":41,"topic_id":5}',
    b'{"topic":"revs","partition":2,"offset":41,"topic_id":["8992b4ef"]}',
]


@pytest.mark.parametrize("value", _HOSTILE, ids=range(len(_HOSTILE)))
def test_anything_but_an_exact_marker_is_none_never_a_crash(value: bytes | None) -> None:
    """Markers are unsigned: whatever bytes sit under the key."""
    assert read_marker(_KEY, value, _LOG, 2) is None


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    offset: int


def _marker(p: int, offset: int, at: int, topic_id: uuid.UUID | None = _ID) -> _Rec:
    out = marker_record(_LOG, p, offset, topic_id=topic_id)
    return _Rec(out.key, out.value, at)


def _rules(p: int, first: int, count: int) -> list[_Rec]:
    return [_Rec(f"jti:{p}-{i}".encode(), b"rule", i) for i in range(first, first + count)]


class _Consumer:
    """The calls the tail scan makes, on in-memory state partitions (offsets may have gaps, as
    compaction leaves them); counts the records it hands out."""

    def __init__(
        self, partitions: dict[int, list[_Rec]], ends: dict[int, int] | None = None
    ) -> None:
        self.partitions = partitions
        self.end = {p: rs[-1].offset + 1 if rs else 0 for p, rs in partitions.items()}
        self.end.update(ends or {})
        self.position_of: dict[TopicPartition, int] = {}
        self.assigned: list[TopicPartition] = []
        self.rounds = 0
        self.handed = 0

    def ends(self) -> dict[TopicPartition, int]:
        return {TopicPartition(_STATE, p): end for p, end in self.end.items()}

    def beginning_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return {tp: next((r.offset for r in self.partitions[tp.partition]), 0) for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)
        self.rounds += 1

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.position_of[tp] = offset

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return self.position_of[tp]

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[_Rec]]:
        out = {}
        for tp in self.assigned:
            records = self.partitions[tp.partition]
            batch = [r for r in records if r.offset >= self.position_of[tp]][:100]
            if batch:
                out[tp] = batch
                self.position_of[tp] = batch[-1].offset + 1
            else:  # past a gap at the end, as a fetch moves the position
                self.position_of[tp] = max(self.position_of[tp], self.end[tp.partition])
        self.handed += sum(len(batch) for batch in out.values())
        return out


def _scan(consumer: _Consumer, stop: Any = lambda: False) -> dict[int, Marker]:
    ends = consumer.ends()
    return last_markers(
        consumer, list(ends), ends, _LOG, stop=stop, poll_timeout_ms=10, request_timeout_ms=10
    )


def test_the_last_marker_of_each_partition_is_found_reading_only_its_tail() -> None:
    consumer = _Consumer(
        {
            0: [*_rules(0, 0, 5000), _marker(0, 7, 5000), _marker(0, 9, 5001), *_rules(0, 5002, 9)],
            1: [_marker(1, 3, 0, None), *_rules(1, 1, 40)],
            2: _rules(2, 0, 30),  # no marker: read whole, left out
            3: [],
        }
    )
    assert _scan(consumer) == {0: Marker(9, _ID), 1: Marker(3, None)}
    assert consumer.handed < 1000, "read partition 0 whole"


def test_a_marker_pushed_back_by_thousands_of_records_is_found_in_growing_windows() -> None:
    """Tombstones written after the last marker (an idle log whose rules expire)."""
    consumer = _Consumer({0: [_marker(0, 99, 0), *_rules(0, 1, 3000)]})
    assert _scan(consumer) == {0: Marker(99, _ID)}


def test_the_last_marker_is_the_last_well_formed_one_below_the_end_given() -> None:
    bad = _Rec(b"__offsets__:0", b'{"topic":"revs","partition":0,"offset":5,"topic_id":7}', 3)
    records = [_marker(0, 1, 0), _marker(0, 2, 1), *_rules(0, 2, 1), bad, _marker(0, 3, 4)]
    # The marker at offset 4 came after the end offsets were asked.
    assert _scan(_Consumer({0: records}, ends={0: 4})) == {0: Marker(2, _ID)}


def test_a_partition_ending_in_a_compaction_gap_is_read_to_its_end() -> None:
    consumer = _Consumer({0: [_marker(0, 5, 10), *_rules(0, 20, 3)]}, ends={0: 40})
    assert _scan(consumer) == {0: Marker(5, _ID)}


class _Deadline(Exception):
    pass


def test_stop_ends_the_scan_with_what_it_found_so_far() -> None:
    consumer = _Consumer(
        {0: [_marker(0, 1, 0), *_rules(0, 1, 5)], 1: [_marker(1, 2, 0), *_rules(1, 1, 3000)]}
    )
    assert _scan(consumer, stop=lambda: consumer.rounds >= 2) == {0: Marker(1, _ID)}
    assert consumer.rounds == 2


def test_what_stop_raises_comes_out_of_the_scan() -> None:
    """The worker's deadline."""

    def deadline() -> bool:
        raise _Deadline

    with pytest.raises(_Deadline):
        _scan(_Consumer({0: [_marker(0, 1, 0)]}), stop=deadline)
