"""Sorting one fetched run of state-topic records (logic only; the Kafka path is covered by
test_state_bootstrap_kafka.py): rules reach the sink in order, whether it takes a batch or one
record at a time; markers, tombstones and reserved keys are counted."""

from __future__ import annotations

import json
import uuid
from typing import Any, NamedTuple

import pytest

from consumer_sdk._marker import Marker
from consumer_sdk._state_topic import StateLoad, _apply
from streams._records import marker_record

_LOG = "revs"


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    timestamp: int


class _OneByOne:
    def __init__(self) -> None:
        self.seen: list[bytes | None] = []

    def record(self, value: bytes | None, headers: Any, *, timestamp_ms: int | None = None) -> None:
        self.seen.append(value)


class _Batched(_OneByOne):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def records(self, records: list[Any]) -> None:
        self.calls += 1
        self.seen.extend(r.value for r in records)


def _run() -> list[_Rec]:
    m1 = marker_record(_LOG, 2, 41)
    m2 = marker_record(_LOG, 2, 99)
    foreign = marker_record("other-log", 2, 500)
    return [
        _Rec(b"jti:a", b"rule-a", [("sig", b"s")], 1),
        _Rec(m1.key, m1.value, [], 2),
        _Rec(b"jti:gone", None, [], 3),  # tombstone
        _Rec(b"sub:b", b"rule-b", [("sig", b"s")], 4),
        _Rec(b"__other", b"x", [], 5),  # reserved, not a marker
        _Rec(m2.key, m2.value, [], 6),
        _Rec(b"sid:c", b"rule-c", [("sig", b"s")], 7),
        _Rec(b"__offsets__:2", b"not json", [], 8),  # malformed marker
        _Rec(foreign.key, foreign.value, [], 9),  # another log's marker
    ]


@pytest.mark.parametrize("sink_type", [_OneByOne, _Batched])
def test_rules_reach_the_sink_in_order_and_the_rest_is_counted(sink_type: type[_OneByOne]) -> None:
    sink = sink_type()
    load = StateLoad("revs.state")
    _apply(load, sink, _LOG, 2, _run())  # type: ignore[arg-type]
    assert sink.seen == [b"rule-a", b"rule-b", b"rule-c"]
    assert (load.records, load.tombstones, load.ignored) == (3, 1, 3)
    assert load.seen == {2: Marker(99, None)}  # the last valid marker; another log's is ignored
    if isinstance(sink, _Batched):
        assert sink.calls == 1


def test_a_run_without_rules_leaves_the_sink_alone_but_keeps_its_marker() -> None:
    sink = _OneByOne()
    load = StateLoad("revs.state")
    m = marker_record(_LOG, 0, 7)
    _apply(load, sink, _LOG, 0, [_Rec(m.key, m.value, [], 1)])  # type: ignore[arg-type]
    assert sink.seen == []
    assert load.seen == {0: Marker(7, None)}


_HOSTILE_MARKERS = [
    b'{"topic":"revs","partition":2,"offset":Infinity}',  # int(inf): OverflowError
    b'{"topic":"revs","partition":Infinity,"offset":7}',
    b"[" * 100_000,  # RecursionError in json
    b'{"topic":"revs","partition":2.0,"offset":7}',
    b'{"topic":"revs","partition":2,"offset":7.9}',  # was read as 7
    b'{"topic":"revs","partition":"2","offset":"7"}',  # was read as 7
    b'{"topic":"revs","partition":true,"offset":7}',
    b'["revs",2,7]',
    b"null",
    b'{"topic":"revs","partition":2,"offset":7,"topic_id":"not-a-uuid"}',
    b'{"topic":"revs","partition":2,"offset":7,"topic_id":5}',
]


@pytest.mark.parametrize("value", _HOSTILE_MARKERS, ids=range(len(_HOSTILE_MARKERS)))
def test_a_marker_that_is_not_exactly_one_is_ignored_not_a_crash(value: bytes) -> None:
    """Markers are unsigned: whatever bytes sit under the key, the load goes on and only a
    well-formed marker for this log and partition counts."""
    sink = _OneByOne()
    load = StateLoad("revs.state")
    good = marker_record(_LOG, 2, 41)
    records = [_Rec(good.key, good.value, [], 1), _Rec(b"__offsets__:2", value, [], 2)]
    _apply(load, sink, _LOG, 2, records)  # type: ignore[arg-type]
    assert load.seen == {2: Marker(41, None)}
    assert load.ignored == 1


def test_a_marker_names_the_incarnation_of_its_log() -> None:
    log_id = uuid.UUID("8992b4ef-73f7-4e3a-b980-4c8c10c42e1d")
    m = marker_record(_LOG, 1, 41, topic_id=log_id)
    assert json.loads(m.value or b"")["topic_id"] == str(log_id)
    load = StateLoad("revs.state")
    _apply(load, _OneByOne(), _LOG, 1, [_Rec(m.key, m.value, [], 1)])  # type: ignore[arg-type]
    assert load.seen == {1: Marker(41, log_id)}
    assert load.markers == {}, "accepted only once compared with the log's id"


@pytest.mark.parametrize("key", [b"__offsets__:02", b"__offsets__:2 ", b"__offsets__:1"])
def test_a_marker_under_another_key_than_its_partitions_is_ignored(key: bytes) -> None:
    """The worker and rebuild-state read partition 2's marker from key ``__offsets__:2``
    only (compaction keeps the last record of that key); a stray key never supersedes it."""
    load = StateLoad("revs.state")
    good, stray = marker_record(_LOG, 2, 41), marker_record(_LOG, 2, 99)
    records = [_Rec(good.key, good.value, [], 1), _Rec(key, stray.value, [], 2)]
    _apply(load, _OneByOne(), _LOG, 2, records)  # type: ignore[arg-type]
    assert load.seen == {2: Marker(41, None)}
    assert load.ignored == 1
