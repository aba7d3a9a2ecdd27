"""Reading snapshots from a topic (an in-memory stand-in for Kafka): what anyone who can write
to ``<log>.snapshots`` can make a reader do."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kafka import TopicPartition

from consumer_sdk._snapshot import (
    Chunk,
    ChunkRef,
    Manifest,
    chunk_key,
    encode_chunks,
    manifest_key,
    sign_manifest,
)
from consumer_sdk._snapshot_reader import (
    SnapshotRead,
    load_snapshots,
    read_snapshots,
    read_tails,
    topic_id,
)
from revocation_events import SIGNATURE_HEADER, EventVerifier, SigningKey
from tests.consumer_sdk._helpers import settings

KEY = SigningKey.hmac("snap", b"k" * 32)
LOG = "revocast.revocations"
TOPIC = "revocast.revocations.snapshots"
LIFETIME = 3600.0


@dataclass(frozen=True)
class Record:
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]] = field(default_factory=list)


class FakeConsumer:
    """The part of ``KafkaConsumer`` the reader uses, over in-memory partitions."""

    def __init__(
        self, partitions: dict[int, list[Record]], log_id: uuid.UUID | None = None
    ) -> None:
        self.partitions = partitions
        self.log_id = log_id
        """The id the cluster gives the log now; the consumer's metadata may be older."""
        self._cached_log_id: uuid.UUID | None = None
        self._position: dict[int, int] = {}
        self._paused: set[int] = set()
        self._assigned: set[int] = set()

    @property
    def _cluster(self) -> FakeConsumer:  # kafka-python keeps topic ids there
        return self

    def topics(self) -> set[str]:
        self._cached_log_id = self.log_id
        return {LOG, TOPIC}

    def topic_id(self, topic: str) -> uuid.UUID | None:
        return self._cached_log_id if topic == LOG else None

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.partitions) if topic == TOPIC else None

    def end_offsets(self, tps: Iterable[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return {tp: self._end(tp.partition) for tp in tps}

    def beginning_offsets(self, tps: Iterable[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return {tp: self._begin(tp.partition) for tp in tps}

    def _begin(self, p: int) -> int:
        records = self.partitions[p]
        return records[0].offset if records else 0

    def _end(self, p: int) -> int:
        records = self.partitions[p]
        return records[-1].offset + 1 if records else 0

    def assign(self, tps: Iterable[TopicPartition]) -> None:
        self._assigned = {tp.partition for tp in tps}
        self._paused.clear()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._position[tp.partition] = offset

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tp.partition for tp in tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tp.partition for tp in tps)

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return self._position.get(tp.partition, self._end(tp.partition))

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[Record]]:
        out = {}
        for p in sorted(self._assigned - self._paused):
            at = self._position.get(p, self._end(p))
            batch = [r for r in self.partitions[p] if r.offset >= at][:10]
            if batch:
                out[TopicPartition(TOPIC, p)] = batch
                self._position[p] = batch[-1].offset + 1
            elif at < self._end(p):  # a compacted gap up to the end
                self._position[p] = self._end(p)
        return out


class Writer:
    """Appends to one in-memory snapshot partition as the snapshotter would."""

    def __init__(self, partition: int = 0) -> None:
        self.partition = partition
        self.records: list[Record] = []

    def append(
        self, key: bytes | None, value: bytes | None, headers: list[tuple[str, Any]] | None = None
    ) -> Record:
        record = Record(len(self.records), key, value, headers or [])
        self.records.append(record)
        return record

    def snapshot(
        self, generation: int, offset: int, jtis: list[str], topic_id: uuid.UUID | None = None
    ) -> Record:
        data = encode_chunks([(j, 2_000_000_000, 1_700_000_000) for j in jtis], [])
        refs = []
        for i, d in enumerate(data):
            record = self.append(chunk_key(self.partition, generation, i), d)
            refs.append(ChunkRef(record.offset, len(d), hashlib.sha256(d).hexdigest()))
        value = Manifest(
            topic=LOG,
            partition=self.partition,
            offset=offset,
            generation=generation,
            created_at=1_700_000_000.0,
            max_token_lifetime=LIFETIME,
            rules=len(jtis),
            chunks=tuple(refs),
            topic_id=topic_id,
        ).encode()
        return self.append(manifest_key(self.partition), value, [sign_manifest(value, KEY)])


def read(
    writer: Writer, log_bounds: tuple[int, int] = (0, 1000), log_id: uuid.UUID | None = None
) -> SnapshotRead:
    return read_snapshots(
        FakeConsumer({writer.partition: writer.records}),
        TOPIC,
        LOG,
        [writer.partition],
        EventVerifier([KEY.verification_key()]),
        bounds={writer.partition: log_bounds},
        topic_id=log_id,
        lifetime=LIFETIME,
        timeout_ms=1000,
        poll_timeout_ms=10,
        stop=threading.Event(),
    )


def test_the_latest_signed_snapshot_is_read() -> None:
    writer = Writer()
    writer.snapshot(1, 10, ["a"])
    writer.snapshot(2, 20, ["a", "b"])
    got = read(writer)
    manifest, chunks = got.accepted[0]
    assert (manifest.generation, manifest.offset) == (2, 20)
    assert [j for c in chunks for j in c.jti] == ["a", "b"]


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (b"[" * 100_000, [(SIGNATURE_HEADER, b"snap.HS256.AAAA")]),
        (b"{}", [(SIGNATURE_HEADER, None)]),
    ],
    ids=["deeply-nested-json", "null-signature-header"],
)
def test_a_forged_manifest_record_is_refused_not_raised(
    value: bytes, headers: list[tuple[str, Any]]
) -> None:
    # Anyone who can write to the snapshot topic can append any record; the reader must
    # refuse it (the partition falls back to the state topic or the log), not raise out of
    # the bootstrap, which would retry forever and never fall back.
    writer = Writer()
    writer.snapshot(1, 10, ["a"])
    writer.append(manifest_key(0), value, headers)
    got = read(writer)
    assert got.accepted == {}
    assert got.refused[0] in {"malformed", "bad_signature", "unsigned"}


def test_an_older_manifest_appended_again_is_used_with_its_own_offset() -> None:
    # A rollback (an old signed manifest re-appended, or compaction keeping it) only makes
    # the reader replay more of the log: the log resumes after the older offset.
    writer = Writer()
    old = writer.snapshot(1, 10, ["a"])
    writer.snapshot(2, 20, ["a", "b"])
    writer.append(old.key, old.value, old.headers)
    manifest, _ = read(writer).accepted[0]
    assert (manifest.generation, manifest.offset) == (1, 10)
    # ...unless the log no longer holds the offsets after it.
    assert read(writer, log_bounds=(12, 1000)).refused == {0: "before_log_start"}
    assert read(writer, log_bounds=(0, 10)).refused == {0: "beyond_end"}


def _signed(**changes: Any) -> tuple[bytes, list[tuple[str, Any]]]:
    values: dict[str, Any] = {
        "topic": LOG,
        "partition": 0,
        "offset": 5,
        "generation": 3,
        "created_at": 1_700_000_000.0,
        "max_token_lifetime": LIFETIME,
        "rules": 0,
        "chunks": (),
    }
    values.update(changes)
    value = Manifest(**values).encode()
    return value, [sign_manifest(value, KEY)]


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"topic": "other-log"}, "other_topic"),
        ({"partition": 1}, "other_topic"),
        ({"max_token_lifetime": 7200.0}, "lifetime"),
        ({"chunks": (ChunkRef(500, 10, "ab" * 32),)}, "missing_chunk"),
        ({"chunks": (ChunkRef(0, 10, "ab" * 32),)}, "missing_chunk"),  # generation 1's chunk
    ],
    ids=["other-topic", "other-partition", "other-lifetime", "beyond-topic-end", "other-gen"],
)
def test_a_validly_signed_manifest_that_does_not_fit_is_refused(
    changes: dict[str, Any], reason: str
) -> None:
    writer = Writer()
    writer.snapshot(1, 2, ["a"])
    writer.append(manifest_key(0), *_signed(**changes))
    got = read(writer)
    assert got.accepted == {}
    assert got.refused == {0: reason}


def test_a_chunk_altered_under_its_key_is_refused() -> None:
    writer = Writer()
    writer.snapshot(1, 2, ["a"])
    chunk = writer.records[0]
    assert chunk.value is not None
    writer.records[0] = Record(chunk.offset, chunk.key, chunk.value.replace(b'"a"', b'"b"'))
    assert read(writer).refused == {0: "bad_hash"}


class Sink:
    def __init__(self) -> None:
        self.restored: list[Chunk] = []

    def restore(self, chunks: list[Chunk]) -> dict[str, int]:
        self.restored += chunks
        return {"jti": sum(len(c.jti) for c in chunks)}


def test_refusals_are_counted_and_logged_without_key_material(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, forged = Writer(0), Writer(1)
    good.snapshot(1, 4, ["a"])
    forged.snapshot(1, 4, ["b"])
    value, _ = _signed(partition=1)
    forged.append(
        manifest_key(1), value, [sign_manifest(value, SigningKey.hmac("snap", b"x" * 32))]
    )
    sink = Sink()
    load = load_snapshots(
        FakeConsumer({0: good.records, 1: forged.records}),
        settings(snapshot_keys=(KEY.verification_key(),)),
        sink,  # type: ignore[arg-type]
        {0: (0, 100), 1: (0, 100)},
        log_partitions=2,
        log_id=None,
        stop=threading.Event(),
    )
    assert load.offsets == {0: 4}
    assert load.refused == {"bad_signature": 1}
    assert [j for c in sink.restored for j in c.jti] == ["a"]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warned == ["snapshot of log partition 1 refused (bad_signature): falling back"]
    for secret in (b"k" * 32, b"x" * 32):
        assert secret.decode() not in caplog.text
        assert base64.urlsafe_b64encode(secret).decode()[:20] not in caplog.text


def test_a_snapshot_topic_with_another_partition_count_is_refused_for_every_partition() -> None:
    writer = Writer(0)
    writer.snapshot(1, 4, ["a"])
    load = load_snapshots(
        FakeConsumer({0: writer.records}),
        settings(snapshot_keys=(KEY.verification_key(),)),
        Sink(),  # type: ignore[arg-type]
        {0: (0, 100), 1: (0, 100)},
        log_partitions=2,
        log_id=None,
        stop=threading.Event(),
    )
    assert load.offsets == {}
    assert load.refused == {"partition_count": 2}


def test_a_snapshot_read_but_not_loaded_when_stopping_promises_no_offset() -> None:
    # Stopping between reading the chunks and loading them: the partition must not be
    # reported as starting after the snapshot's offset (its positions outlive the thread,
    # e.g. into a fork), since its rules were never loaded.
    writer = Writer(0)
    writer.snapshot(1, 4, ["a"])
    stop = threading.Event()

    class Stopping(FakeConsumer):
        resumed = 0

        def resume(self, *tps: TopicPartition) -> None:
            super().resume(*tps)
            self.resumed += 1
            if self.resumed == 2:  # the end of the read: manifests, then chunks fetched
                stop.set()

    sink = Sink()
    load = load_snapshots(
        Stopping({0: writer.records}),
        settings(snapshot_keys=(KEY.verification_key(),)),
        sink,  # type: ignore[arg-type]
        {0: (0, 100)},
        log_partitions=1,
        log_id=None,
        stop=stop,
    )
    assert sink.restored == []
    assert load.offsets == {}


def tails(writer: Writer) -> Any:
    return read_tails(
        FakeConsumer({writer.partition: writer.records}),
        TOPIC,
        [writer.partition],
        timeout_ms=1000,
        poll_timeout_ms=10,
        stop=threading.Event(),
    )[writer.partition]


def test_a_writer_taking_over_finds_the_last_generation_and_unfinished_writes_after_it() -> None:
    # Another worker's last generation, signed by a key this writer may not hold (a
    # rotation): its chunks are replaced all the same. Then a write cut short, by a clock
    # ahead: the next generation must be above it, and its chunks are garbage too.
    writer = Writer()
    writer.snapshot(5, 10, ["a"])
    other = SigningKey.hmac("other", b"o" * 32)
    last = writer.snapshot(7, 20, [f"{i:0500d}" for i in range(3000)])
    writer.records[-1] = dataclasses.replace(
        last, headers=[sign_manifest(last.value or b"", other)]
    )
    writer.append(chunk_key(0, 9, 0), b"{}")
    tail = tails(writer)
    assert tail.end == len(writer.records)
    assert tail.generation == 9
    chunks = len(json.loads(last.value or b"")["chunks"])
    assert chunks > 1
    assert tail.garbage == (*(chunk_key(0, 7, i) for i in range(chunks)), chunk_key(0, 9, 0))


def test_an_empty_snapshot_partition_has_no_garbage_and_no_generation() -> None:
    tail = tails(Writer())
    assert (tail.end, tail.generation, tail.garbage) == (0, -1, ())


OLD_LOG = uuid.UUID("11111111-1111-4111-8111-111111111111")
NEW_LOG = uuid.UUID("22222222-2222-4222-8222-222222222222")


@pytest.mark.parametrize(
    ("written_for", "log_now", "refused"),
    [
        (NEW_LOG, NEW_LOG, None),
        (OLD_LOG, NEW_LOG, "other_incarnation"),
        (None, NEW_LOG, "no_topic_id"),  # written before manifests named the incarnation
        (NEW_LOG, None, "no_topic_id"),
        (None, None, None),  # a broker without topic ids: the offset checks only
    ],
    ids=["same-log", "recreated-log", "manifest-without-id", "log-without-id", "no-ids"],
)
def test_a_snapshot_of_another_incarnation_of_the_log_is_refused(
    written_for: uuid.UUID | None, log_now: uuid.UUID | None, refused: str | None
) -> None:
    # A log deleted and recreated under the same name, long enough again that the offset
    # checks pass: the snapshot's offsets would make the reader skip the new log's records.
    writer = Writer()
    writer.snapshot(1, 10, ["a"], topic_id=written_for)
    got = read(writer, log_bounds=(0, 500), log_id=log_now)
    assert got.refused == ({} if refused is None else {0: refused})
    assert (0 in got.accepted) is (refused is None)


def test_the_sdk_compares_with_the_log_s_id_asked_afresh_not_the_cached_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    writer = Writer(0)
    writer.snapshot(1, 4, ["a"], topic_id=OLD_LOG)
    consumer = FakeConsumer({0: writer.records}, log_id=OLD_LOG)
    consumer.topics()  # metadata fetched before the log was recreated
    consumer.log_id = NEW_LOG
    sink = Sink()
    load = load_snapshots(
        consumer,
        settings(snapshot_keys=(KEY.verification_key(),)),
        sink,  # type: ignore[arg-type]
        {0: (0, 100)},
        log_partitions=1,
        log_id=topic_id(consumer, LOG),
        stop=threading.Event(),
    )
    assert (load.offsets, sink.restored) == ({}, [])
    assert load.refused == {"other_incarnation": 1}
    assert "snapshot of log partition 0 refused (other_incarnation)" in caplog.text
