"""Byte formats the worker writes, read back: offset markers from hostile bytes."""

from __future__ import annotations

import json
import uuid

import pytest

from consumer_sdk._marker import Marker, read_marker
from streams._records import marker_record

_KEY = b"__offsets__:2"


def test_a_marker_the_worker_wrote_reads_back() -> None:
    out = marker_record("revs", 2, 41)
    assert read_marker(out.key, out.value, "revs", 2) == Marker(41, None)
    assert read_marker(out.key, out.value, "other", 2) is None
    assert read_marker(out.key, out.value, "revs", 1) is None


@pytest.mark.parametrize(
    "value",
    [
        b"[" * 100_000,  # RecursionError in json: crashed revocast status and the worker
        b'{"topic":"revs","partition":2,"offset":Infinity}',
        b'{"topic":"revs","partition":2.0,"offset":41}',
        b'{"topic":"revs","partition":true,"offset":41}',
        b'{"topic":"revs","partition":2,"offset":41.0}',
        b'{"topic":"revs","partition":2,"offset":-1}',
        b'"revs"',
        b"not json",
        # SDKs pass these over: the worker resumed after one SDKs never see as a marker
        b'{"topic":"revs","partition":2,"offset":41,"topic_id":"not-a-uuid"}',
        b'{"topic":"revs","partition":2,"offset":41,"topic_id":""}',
        b'{"topic":"revs","partition":2,"offset":41,"topic_id":5}',
    ],
)
def test_anything_but_an_exact_marker_is_none(value: bytes) -> None:
    assert read_marker(_KEY, value, "revs", 2) is None


def test_a_marker_names_the_incarnation_of_its_log_when_given_one() -> None:
    log_id = uuid.UUID("8992b4ef-73f7-4e3a-b980-4c8c10c42e1d")
    out = marker_record("revs", 2, 41, topic_id=log_id)
    assert out.value is not None
    assert json.loads(out.value)["topic_id"] == str(log_id)
    assert read_marker(out.key, out.value, "revs", 2) == Marker(41, log_id)
    bare = marker_record("revs", 2, 41)  # a broker without topic ids; rebuild-state so far
    assert bare.value is not None
    assert "topic_id" not in json.loads(bare.value)
    assert read_marker(bare.key, bare.value, "revs", 2) == Marker(41, None)
