"""The fast record parser yields exactly what kafka-python's own parser yields, and fails alike.

No broker: record batches are built with kafka-python's own builders, then read by both
``Fetcher.PartitionRecords`` (stock) and :class:`FastPartitionRecords`.
"""

from __future__ import annotations

import collections
import struct
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaConsumer
from kafka import codec as codecs
from kafka.consumer.fetcher import Fetcher, IsolationLevel
from kafka.errors import CorruptRecordError
from kafka.record.default_records import DefaultRecordBatch, DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.record.util import calc_crc32c
from kafka.serializer import Deserializer
from kafka.structs import TopicPartition

from consumer_sdk._kafka_records import FastPartitionRecords, install, supported

TP = TopicPartition("t", 0)
Rec = tuple[int, bytes | None, bytes | None, list[tuple[str, bytes | None]]]
HEADERS: list[tuple[str, bytes | None]] = [
    ("revocast-sig", b"bench.HS256.aBMqrzQ3bPvmGxX_LvyTSpozN2lvrfVgL3hEjRLaDZI")
]


def batch(records: list[Rec], *, offset: int = 0, magic: int = 2, compression: int = 0) -> bytes:
    b = MemoryRecordsBuilder(magic, compression, 1 << 24, offset=offset)
    for ts, key, value, headers in records:
        if magic == 2:
            b.append(timestamp=ts, key=key, value=value, headers=headers)
        else:
            b.append(timestamp=ts, key=key, value=value)
    b.close()
    return bytes(b.buffer())


def with_attributes(data: bytes, set_bits: int) -> bytes:
    """The v2 batch ``data`` with attribute bits set and its CRC recomputed."""
    buf = bytearray(data)
    at = DefaultRecordBatch.ATTRIBUTES_OFFSET
    (attrs,) = struct.unpack_from(">h", buf, at)
    struct.pack_into(">h", buf, at, attrs | set_bits)
    return with_crc(buf)


def with_crc(buf: bytearray) -> bytes:
    crc = calc_crc32c(memoryview(buf)[DefaultRecordBatch.ATTRIBUTES_OFFSET :])
    struct.pack_into(">I", buf, DefaultRecordBatch.CRC_OFFSET, crc)
    return bytes(buf)


def read(cls: Any, data: bytes, fetch_offset: int = 0, check_crcs: bool = True) -> Any:
    """(records, next_fetch_offset, records_read, bytes_read) or the error raised."""
    part = cls(fetch_offset, TP, MemoryRecords(data), check_crcs=check_crcs)
    try:
        records = part.take()
        more = part.take() if part else []  # an error found after records surfaces here
    except CorruptRecordError as exc:
        return type(exc), str(exc)
    return records + more, part.next_fetch_offset, part.records_read, part.bytes_read


def same(data: bytes, fetch_offset: int = 0) -> Any:
    stock = read(Fetcher.PartitionRecords, data, fetch_offset)
    fast = read(FastPartitionRecords, data, fetch_offset)
    assert fast == stock
    return fast


def test_the_installed_kafka_python_has_the_internals_the_parser_needs() -> None:
    assert supported()


def test_typical_revocation_batches_are_read_identically() -> None:
    value = b'{"v":1,"type":"token.revoked","jti":"' + b"j" * 200 + b'"}'
    recs: list[Rec] = [(1_795_454_013_521 + i, b"jti:%09d" % i, value, HEADERS) for i in range(300)]
    data = batch(recs) + batch(recs, offset=300) + batch(recs[:7], offset=600)
    records, next_offset, n, _ = same(data)
    assert len(records) == n == 607
    assert next_offset == 607
    assert records[0].value == value
    assert records[0].headers == HEADERS


def test_a_fetch_starting_inside_a_batch_skips_the_records_before_it() -> None:
    recs: list[Rec] = [(1000 + i, None, b"v%d" % i, []) for i in range(10)]
    records, next_offset, _, _ = same(batch(recs, offset=50), fetch_offset=55)
    assert [r.offset for r in records] == list(range(55, 60))
    assert next_offset == 60


def test_log_append_time_batches_use_the_batch_max_timestamp() -> None:
    recs: list[Rec] = [(1000 + 7 * i, b"k", b"v", []) for i in range(5)]
    data = with_attributes(batch(recs), DefaultRecordBatch.TIMESTAMP_TYPE_MASK)
    records, *_ = same(data)
    assert {r.timestamp_type for r in records} == {1}
    assert len({r.timestamp for r in records}) == 1


def test_control_batches_are_skipped_alike() -> None:
    recs: list[Rec] = [(1000, b"\x00\x00\x00\x01", b"\x00\x00\x00\x00\x00\x00", [])]
    data = batch([(1, b"a", b"b", [])]) + with_attributes(
        batch(recs, offset=1), DefaultRecordBatch.CONTROL_MASK
    )
    records, next_offset, _, _ = same(data)
    assert [r.offset for r in records] == [0]
    assert next_offset == 2


@pytest.mark.parametrize("compression", [1])  # gzip: always available
def test_compressed_batches_are_read_identically(compression: int) -> None:
    recs: list[Rec] = [(1000 + i, b"k%d" % i, b"v" * i, HEADERS) for i in range(50)]
    records, *_ = same(batch(recs, compression=compression))
    assert len(records) == 50


@pytest.mark.parametrize("magic", [0, 1])
def test_old_message_formats_go_through_the_stock_loop(magic: int) -> None:
    recs: list[Rec] = [(1000 + i, b"k", b"v%d" % i, []) for i in range(5)]
    records, *_ = same(batch(recs, magic=magic))
    assert len(records) == 5


def test_a_batch_with_a_wrong_crc_is_refused_alike() -> None:
    data = bytearray(batch([(1000, b"k", b"value", HEADERS)]))
    data[-3] ^= 0xFF
    error = same(bytes(data))
    assert error[0] is CorruptRecordError
    assert "crc" in error[1]


def test_crc_checking_stays_on_the_consumer_setting() -> None:
    data = bytearray(batch([(1000, b"k", b"value", [])]))
    data[-2] ^= 0xFF
    stock = read(Fetcher.PartitionRecords, bytes(data), check_crcs=False)
    fast = read(FastPartitionRecords, bytes(data), check_crcs=False)
    assert fast == stock
    assert fast[0][0].value != b"value"


def _records_start(data: bytes) -> int:
    return int(DefaultRecordBatch.HEADER_STRUCT.size)


@pytest.mark.parametrize(
    "damage",
    [
        "length+1",
        "length-1",
        "negative headers",
        "truncated",
        "trailing byte",
        "huge key",
        "bad header key utf-8",
        "negative header key",
        "endless varint",
    ],
)
def test_structurally_corrupt_records_with_a_valid_crc_fail_alike(damage: str) -> None:
    header: list[tuple[str, bytes | None]] = [("h", b"x")]
    recs: list[Rec] = [(1000, b"k", b"value", header), (1001, b"k2", b"v2", [])]
    buf = bytearray(batch(recs))
    start = _records_start(bytes(buf))
    # First record: length, attrs, ts delta, offset delta, key len, key "k", value len, value,
    # header count, header key len, "h", header value len, "x".
    if damage == "length+1":
        buf[start] += 2
    elif damage == "length-1":
        buf[start] -= 2
    elif damage == "negative headers":
        pos = start + 4 + 1 + 1 + 1 + 5
        assert buf[pos] == 2  # zigzag(1)
        buf[pos] = 3  # zigzag(-2)
    elif damage == "truncated":
        del buf[-3:]
        struct.pack_into(">i", buf, 8, len(buf) - 12)
    elif damage == "trailing byte":
        buf += b"\x00"
        struct.pack_into(">i", buf, 8, len(buf) - 12)
    elif damage == "huge key":
        buf[start + 4] = 0x7E  # zigzag(63)
    elif damage == "bad header key utf-8":
        buf[start + 4 + 1 + 1 + 1 + 5 + 1 + 1] = 0xFF
    elif damage == "negative header key":
        buf[start + 4 + 1 + 1 + 1 + 5 + 1] = 3
    elif damage == "endless varint":
        buf[start + 2 :] = b"\xff" * (len(buf) - start - 2)
    stock = read(Fetcher.PartitionRecords, with_crc(buf))
    fast = read(FastPartitionRecords, with_crc(buf))
    assert fast == stock
    assert stock[0] is CorruptRecordError, stock


_header = st.tuples(st.text(max_size=20), st.one_of(st.none(), st.binary(max_size=300)))
_record = st.tuples(
    st.integers(min_value=0, max_value=2**40),
    st.one_of(st.none(), st.binary(max_size=200)),
    st.one_of(st.none(), st.binary(max_size=20_000)),
    st.lists(_header, max_size=3),
)


@hsettings(max_examples=150, deadline=None)
@given(st.lists(st.lists(_record, min_size=1, max_size=20), min_size=1, max_size=4))
def test_any_records_are_read_identically(batches: list[list[Rec]]) -> None:
    data, offset = b"", 0
    for recs in batches:
        ts0 = min(r[0] for r in recs)
        # Timestamps relative to the batch's first one, as a producer writes them.
        data += batch([(ts0 + (r[0] - ts0) % 2**31, *r[1:]) for r in recs], offset=offset)
        offset += len(recs)
    records, next_offset, n, _ = same(data)
    assert n == len(records) == offset == next_offset


def test_install_replaces_the_parser_on_that_consumer_only() -> None:
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(3, 0))
    other = KafkaConsumer(bootstrap_servers="127.0.0.1:1", api_version=(3, 0))
    try:
        assert install(consumer)
        assert consumer._fetcher.PartitionRecords is FastPartitionRecords
        assert other._fetcher.PartitionRecords is Fetcher.PartitionRecords
    finally:
        consumer.close(timeout_ms=0)
        other.close(timeout_ms=0)


def test_install_leaves_consumers_with_deserializers_alone() -> None:
    class Raw(Deserializer):  # type: ignore[misc]
        def deserialize(self, topic: str, headers: Any, data: bytes | None) -> bytes | None:
            return data

    consumer = KafkaConsumer(
        bootstrap_servers="127.0.0.1:1", api_version=(3, 0), value_deserializer=Raw()
    )
    try:
        assert not install(consumer)
        assert consumer._fetcher.PartitionRecords is Fetcher.PartitionRecords
    finally:
        consumer.close(timeout_ms=0)


# Differential fuzzing of whole fetch responses: every batch kind the broker can send (v2 data
# batches with offset gaps, transactional or not, compressed or not, log-append time; control
# markers; magic 0/1 message sets), read at any fetch offset, in either isolation level, cut
# anywhere (a partial batch ends most fetches), with any byte flipped (CRC refreshed or not),
# drained in chunks of any size. Both parsers must yield the same ConsumerRecords, or fail
# alike at the same point, and leave the same fetch state behind.

_CODECS = [0] + [1] * codecs.has_gzip() + [2] * codecs.has_snappy()
_CODECS += [3] * codecs.has_lz4() + [4] * codecs.has_zstd()
_Aborted = collections.namedtuple("_Aborted", ["producer_id", "first_offset"])

_v2_data = st.fixed_dictionaries(
    {
        "kind": st.just("v2"),
        "records": st.lists(
            st.tuples(st.integers(0, 3), _record), min_size=1, max_size=8
        ),  # (offset gap before it, record)
        "codec": st.sampled_from(_CODECS),
        "producer_id": st.sampled_from([-1, 1, 2]),
        "transactional": st.booleans(),
        "append_time": st.booleans(),
        "epoch": st.integers(-1, 5),
    }
)
_v2_control = st.fixed_dictionaries(
    {
        "kind": st.just("control"),
        "producer_id": st.sampled_from([1, 2]),
        "abort": st.booleans(),
        "epoch": st.integers(-1, 5),
    }
)
_legacy = st.fixed_dictionaries(
    {
        "kind": st.just("legacy"),
        "magic": st.sampled_from([0, 1]),
        "codec": st.sampled_from([c for c in _CODECS if c in (0, 1, 2, 3)]),
        "records": st.lists(_record, min_size=1, max_size=5),
    }
)


def _v2_batch(spec: dict[str, Any], base: int) -> tuple[bytes, int]:
    pid = spec["producer_id"]
    control = spec["kind"] == "control"
    transactional = pid != -1 and (control or spec["transactional"])
    builder = DefaultRecordBatchBuilder(
        2,
        0 if control else spec["codec"],
        transactional,
        pid,
        0 if pid != -1 else -1,
        0 if pid != -1 else -1,
        1 << 24,
    )
    if control:
        key = struct.pack(">hh", 0, 0 if spec["abort"] else 1)
        builder.append(0, 1000, key, b"\x00\x00\x00\x00\x00\x00", [])
        last = 0
    else:
        delta, ts0 = -1, spec["records"][0][1][0]
        for gap, (ts, key, value, headers) in spec["records"]:
            delta += 1 + gap
            builder.append(delta, ts0 + (ts - ts0) % 2**31, key, value, headers)
        last = delta
    buf = builder.build()
    struct.pack_into(">q", buf, 0, base)
    struct.pack_into(">i", buf, DefaultRecordBatch.AFTER_LEN_OFFSET, spec["epoch"])
    bits = DefaultRecordBatch.CONTROL_MASK if control else 0
    if not control and spec["append_time"]:
        bits |= DefaultRecordBatch.TIMESTAMP_TYPE_MASK
    return with_attributes(bytes(buf), bits), base + last + 1


def _fetch_response(segments: list[dict[str, Any]]) -> tuple[bytes, list[int], int]:
    """The concatenated batches, where each starts, and the offset after the last one."""
    data, starts, offset = b"", [], 0
    for spec in segments:
        starts.append(len(data))
        if spec["kind"] == "legacy":
            recs: list[Rec] = [(ts % 2**40, k, v, []) for ts, k, v, _ in spec["records"]]
            data += batch(recs, offset=offset, magic=spec["magic"], compression=spec["codec"])
            offset += len(recs)
        else:
            raw, offset = _v2_batch(spec, offset)
            data += raw
    return data, starts, offset


def drain(cls: Any, data: bytes, chunk: int | None, **kwargs: Any) -> Any:
    """Everything a consumer observes reading ``data`` ``chunk`` records at a time."""
    part = cls(kwargs.pop("fetch_offset"), TP, MemoryRecords(data), **kwargs)
    seen: list[Any] = []
    error = None
    for _ in range(10_000):
        if not part:
            break
        try:
            got = part.take(chunk)
        except Exception as exc:  # the exact type and message are compared
            error = (type(exc), str(exc))
            break
        seen.extend(got)
        if not got and chunk is not None and not part:
            break
    return seen, error, part.next_fetch_offset, part.records_read, part.bytes_read, bool(part)


@hsettings(max_examples=300, deadline=None)
@given(
    segments=st.lists(st.one_of(_v2_data, _v2_data, _v2_control, _legacy), min_size=1, max_size=5),
    fetch_at=st.floats(0, 1.1),
    read_committed=st.booleans(),
    aborted=st.lists(st.tuples(st.sampled_from([1, 2]), st.floats(0, 1)), max_size=3),
    damage=st.sampled_from(["none", "cut", "flip", "flip+crc", "record", "record"]),
    inside=st.floats(0, 1, exclude_max=True),
    where=st.floats(0, 1, exclude_max=True),
    xor=st.integers(1, 255),
    check_crcs=st.booleans(),
    chunk=st.sampled_from([None, 1, 3]),
)
def test_any_fetch_response_is_read_identically(
    segments: list[dict[str, Any]],
    fetch_at: float,
    read_committed: bool,
    aborted: list[tuple[int, float]],
    damage: str,
    where: float,
    inside: float,
    xor: int,
    check_crcs: bool,
    chunk: int | None,
) -> None:
    data, starts, end = _fetch_response(segments)
    buf = bytearray(data)
    at = int(where * len(buf))
    if damage == "cut":
        del buf[at:]
    elif damage == "record":  # a byte of a v2 batch's records, its CRC refreshed
        start = starts[int(where * len(starts))]
        size = struct.unpack_from(">i", buf, start + 8)[0] + 12
        if buf[start + 16] == 2 and size > DefaultRecordBatch.HEADER_STRUCT.size:
            first = DefaultRecordBatch.HEADER_STRUCT.size
            buf[start + first + int(inside * (size - first))] ^= xor
            buf[start : start + size] = with_crc(buf[start : start + size])
    elif damage.startswith("flip"):
        buf[at] ^= xor
        if damage == "flip+crc":
            for start in starts:  # refresh the CRC of the v2 batch hit, to parse its records
                if start <= at and buf[start + 16] == 2 and at >= start + 21:
                    size = struct.unpack_from(">i", buf, start + 8)[0] + 12
                    if 0 < size <= len(buf) - start:
                        buf[start : start + size] = with_crc(buf[start : start + size])
    kwargs = {
        "fetch_offset": int(fetch_at * end),
        "check_crcs": check_crcs,
        "isolation_level": IsolationLevel.READ_COMMITTED
        if read_committed
        else IsolationLevel.READ_UNCOMMITTED,
        "aborted_transactions": [_Aborted(pid, int(f * end)) for pid, f in aborted],
    }
    stock = drain(Fetcher.PartitionRecords, bytes(buf), chunk, **dict(kwargs))
    fast = drain(FastPartitionRecords, bytes(buf), chunk, **dict(kwargs))
    assert fast == stock
