"""Byte formats the worker writes, read back: offset markers from hostile bytes."""

from __future__ import annotations

import pytest

from streams._records import marker_offset, marker_record

_KEY = b"__offsets__:2"


def test_a_marker_the_worker_wrote_reads_back() -> None:
    out = marker_record("revs", 2, 41)
    assert marker_offset(out.key, out.value, "revs", 2) == 41
    assert marker_offset(out.key, out.value, "other", 2) is None
    assert marker_offset(out.key, out.value, "revs", 1) is None


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
    ],
)
def test_anything_but_an_exact_marker_is_none(value: bytes) -> None:
    assert marker_offset(_KEY, value, "revs", 2) is None
