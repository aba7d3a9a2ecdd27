"""Snapshot bootstrap against a real broker: the snapshotter writes, the SDK loads.

The snapshots are written by :class:`streams._snapshot.Snapshotter` (the code the worker
runs in its thread), except in the last test, which runs the real faust worker.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import random
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import TopicAlreadyExistsError

from consumer_sdk import Revocast
from consumer_sdk._snapshot import ChunkRef, Manifest, chunk_key, manifest_key, sign_manifest
from consumer_sdk._snapshot_reader import read_snapshots, topic_id
from revocation_events import (
    EventCodec,
    EventSigner,
    EventVerifier,
    KafkaSettings,
    SigningKey,
    TokenRevoked,
)
from streams import StreamsSettings
from streams._snapshot import Snapshotter
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import FakeClock, settings
from tests.streams._support import KEY, SIGNING_CODEC
from tests.streams._worker import (
    Worker,
    delete_worker_topics,
    end_offsets,
    publish,
    scenario,
    worker_env,
)

_LIFETIME = 600.0
_NO_EXPIRY = 1800.0  # short-lived rules outlive the test (see test_state_bootstrap_kafka)
SNAPSHOT_KEY = SigningKey.hmac("snap-1", b"n" * 32)
OTHER_KEY = SigningKey.hmac("snap-2", b"o" * 32)
SAME_KID_OTHER_SECRET = SigningKey.hmac("snap-1", b"x" * 32)


@pytest.fixture
def log_topic(make_topic: MakeTopic, kafka_bootstrap: str) -> Iterator[str]:
    topic = make_topic(partitions=3)
    yield topic
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        admin.delete_topics([f"{topic}.snapshots"], timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()


def streams_settings(bootstrap: str, topic: str) -> StreamsSettings:
    return StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
        verification_keys=(KEY.verification_key(),),
        snapshot_signing_key=SNAPSHOT_KEY,
        max_token_lifetime=_LIFETIME,
    )


def client(
    bootstrap: str, topic: str, clock: FakeClock, *, trusted: bool = True, **extra: Any
) -> Revocast:
    return Revocast(
        settings(
            kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
            bootstrap="state",
            event_keys=(KEY.verification_key(),),
            snapshot_keys=(SNAPSHOT_KEY.verification_key(),) if trusted else (),
            max_token_lifetime=_LIFETIME,
            heartbeat_interval=0.0,
            **extra,
        ),
        clock=clock,
    )


def log_replay(bootstrap: str, topic: str, clock: FakeClock) -> Any:
    with Revocast(
        settings(
            kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
            event_keys=(KEY.verification_key(),),
            max_token_lifetime=_LIFETIME,
            heartbeat_interval=0.0,
        ),
        clock=clock,
    ) as rc:
        assert rc.wait_until_ready(60)
        return rc.state.snapshot()


def fill(bootstrap: str, topic: str, tag: str, size: int, seed: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        events = scenario(random.Random(seed), datetime.now(UTC), tag, size, _NO_EXPIRY)
        publish(producer, topic, events.records)
    finally:
        producer.close(timeout=10)


@pytest.mark.kafka
def test_snapshot_bootstrap_equals_log_replay_while_events_keep_arriving(
    kafka_bootstrap: str, log_topic: str
) -> None:
    fill(kafka_bootstrap, log_topic, "before", 1000, seed=1)
    manifests = Snapshotter(streams_settings(kafka_bootstrap, log_topic)).catch_up(60)
    assert sorted(manifests) == [0, 1, 2]
    rng = random.Random(2)
    batches = [
        scenario(rng, datetime.now(UTC), f"after{n}", 300, short_lived=_NO_EXPIRY) for n in range(6)
    ]
    first_sent = threading.Event()
    failure: list[BaseException] = []

    def keep_publishing() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
        try:
            for batch in batches:
                publish(producer, log_topic, batch.records)
                first_sent.set()
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
        finally:
            first_sent.set()
            producer.close(timeout=10)

    publisher = threading.Thread(target=keep_publishing, name="publisher")
    clock = FakeClock()
    publisher.start()
    try:
        assert first_sent.wait(30)
        with client(kafka_bootstrap, log_topic, clock) as from_snapshot:
            assert from_snapshot.wait_until_ready(60)
            publisher.join(60)
            assert not failure, failure
            ends = end_offsets(kafka_bootstrap, log_topic)
            replayed = log_replay(kafka_bootstrap, log_topic, clock)

            def tailed() -> bool:
                positions = from_snapshot.stats()["positions"]
                return all(positions.get(p, 0) >= end for p, end in ends.items())

            wait_until(tailed, timeout=30, message="the snapshot SDK to tail the log")
            boot = from_snapshot.stats()["bootstrap"]
            assert boot["mode"] == "snapshot"
            assert boot["partitions"] == {0: "snapshot", 1: "snapshot", 2: "snapshot"}
            assert boot["snapshot_refused"] == {}
            assert boot["snapshot"]["offsets"] == {p: m.offset for p, m in manifests.items()}
            assert from_snapshot.state.snapshot() == replayed
    finally:
        publisher.join(60)


def _forge(
    bootstrap: str, topic: str, manifest: Manifest, key: SigningKey, chunks: list[bytes]
) -> None:
    """Write ``chunks`` as a new generation of partition 0 and a manifest listing them with
    the hashes and fields of ``manifest``, signed by ``key``."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    snapshots = f"{topic}.snapshots"
    try:
        generation = manifest.generation + 1
        offsets = [
            producer.send(snapshots, key=chunk_key(0, generation, i), value=data, partition=0)
            .get(30)
            .offset
            for i, data in enumerate(chunks)
        ]
        # The listed hashes stay the original ones; listed chunks not written stay where
        # the manifest says.
        refs = tuple(
            ChunkRef(offsets[i] if i < len(offsets) else ref.offset, ref.size, ref.sha256)
            for i, ref in enumerate(manifest.chunks)
        )
        forged = Manifest(
            topic=manifest.topic,
            partition=manifest.partition,
            offset=manifest.offset,
            generation=generation,
            created_at=manifest.created_at,
            max_token_lifetime=manifest.max_token_lifetime,
            rules=manifest.rules,
            chunks=refs,
            topic_id=manifest.topic_id,
        )
        value = forged.encode()
        producer.send(
            snapshots,
            key=manifest_key(0),
            value=value,
            partition=0,
            headers=[sign_manifest(value, key)],
        ).get(30)
    finally:
        producer.close(timeout=10)


def _tampered(
    original: list[bytes], manifest: Manifest
) -> tuple[Manifest, SigningKey, list[bytes]]:
    first = bytearray(original[0])
    first[first.index(b'"') + 1 : first.index(b'"') + 1] = b" "  # still JSON, other bytes
    return manifest, SNAPSHOT_KEY, [bytes(first), *original[1:]]


def _other_topic(
    original: list[bytes], manifest: Manifest
) -> tuple[Manifest, SigningKey, list[bytes]]:
    return dataclasses.replace(manifest, topic="another.log"), SNAPSHOT_KEY, original


def _missing_chunk(
    original: list[bytes], manifest: Manifest
) -> tuple[Manifest, SigningKey, list[bytes]]:
    refs = (*manifest.chunks, ChunkRef(10**9, 10, hashlib.sha256(b"gone").hexdigest()))
    return dataclasses.replace(manifest, chunks=refs), SNAPSHOT_KEY, original


Forgery = Callable[[list[bytes], Manifest], tuple[Manifest, SigningKey, list[bytes]]]
FORGERIES: dict[str, tuple[Forgery, str]] = {
    "tampered-chunk": (_tampered, "bad_hash"),
    "untrusted-key": (lambda c, m: (m, OTHER_KEY, c), "unknown_key"),
    "same-kid-other-secret": (lambda c, m: (m, SAME_KID_OTHER_SECRET, c), "bad_signature"),
    "missing-chunk": (_missing_chunk, "missing_chunk"),
    "other-topic": (_other_topic, "other_topic"),
}


@pytest.mark.kafka
@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_refused_snapshot_falls_back_to_the_log_with_its_reason_counted(
    kafka_bootstrap: str, log_topic: str, forgery: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(kafka_bootstrap, log_topic, "forged", 300, seed=3)
    manifests = Snapshotter(streams_settings(kafka_bootstrap, log_topic)).catch_up(60)
    original = _chunks(kafka_bootstrap, log_topic, 0)
    make, reason = FORGERIES[forgery]
    _forge(kafka_bootstrap, log_topic, *make(original, manifests[0]))
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        boot = rc.stats()["bootstrap"]
        assert boot["partitions"] == {0: "log", 1: "snapshot", 2: "snapshot"}
        assert boot["snapshot_refused"] == {reason: 1}
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
    assert f"snapshot of log partition 0 refused ({reason})" in caplog.text


def _chunks(bootstrap: str, topic: str, partition: int) -> list[bytes]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        read = read_snapshots(
            consumer,
            f"{topic}.snapshots",
            topic,
            [partition],
            EventVerifier([SNAPSHOT_KEY.verification_key()]),
            bounds=None,
            topic_id=None,
            lifetime=_LIFETIME,
            timeout_ms=10_000,
            poll_timeout_ms=200,
            stop=threading.Event(),
        )
    finally:
        consumer.close()
    manifest, _ = read.accepted[partition]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(f"{topic}.snapshots", partition)
        consumer.assign([tp])
        out: dict[int, bytes] = {}
        wanted = {ref.offset for ref in manifest.chunks}
        consumer.seek(tp, min(wanted))
        while not wanted <= set(out):
            for records in consumer.poll(timeout_ms=500).values():
                out.update({r.offset: r.value for r in records if r.offset in wanted})
    finally:
        consumer.close()
    return [out[ref.offset] for ref in manifest.chunks]


@pytest.mark.kafka
def test_snapshots_are_ignored_without_trusted_keys(kafka_bootstrap: str, log_topic: str) -> None:
    fill(kafka_bootstrap, log_topic, "untrusted", 200, seed=4)
    Snapshotter(streams_settings(kafka_bootstrap, log_topic)).catch_up(60)
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock, trusted=False) as rc:
        assert rc.wait_until_ready(60)
        boot = rc.stats()["bootstrap"]
        assert boot["mode"] == "log"  # and no state topic either
        assert boot["snapshot"] == {"used": False, "why": "no snapshot_keys configured"}
        assert set(boot["partitions"].values()) == {"log"}
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)


@pytest.mark.kafka
def test_a_snapshot_for_another_max_token_lifetime_is_refused(
    kafka_bootstrap: str, log_topic: str
) -> None:
    fill(kafka_bootstrap, log_topic, "lifetime", 100, seed=5)
    Snapshotter(streams_settings(kafka_bootstrap, log_topic)).catch_up(60)
    with Revocast(
        settings(
            kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log_topic),
            bootstrap="state",
            event_keys=(KEY.verification_key(),),
            snapshot_keys=(SNAPSHOT_KEY.verification_key(),),
            max_token_lifetime=2 * _LIFETIME,
            heartbeat_interval=0.0,
        )
    ) as longer:
        assert longer.wait_until_ready(60)
        assert longer.stats()["bootstrap"]["snapshot_refused"] == {"lifetime": 3}


@pytest.mark.kafka
def test_the_snapshotter_resumes_from_its_own_snapshot_and_replaces_the_old_generation(
    kafka_bootstrap: str, log_topic: str
) -> None:
    fill(kafka_bootstrap, log_topic, "first", 200, seed=6)
    first = Snapshotter(streams_settings(kafka_bootstrap, log_topic)).catch_up(60)
    fill(kafka_bootstrap, log_topic, "second", 200, seed=7)
    restarted = Snapshotter(streams_settings(kafka_bootstrap, log_topic))
    second = restarted.catch_up(60)
    # It read only what followed its snapshots: the second fill's five forged records.
    assert restarted.counters["skipped.bad_signature"] == 5
    for p in first:
        assert second[p].generation > first[p].generation
        assert second[p].offset > first[p].offset
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        assert rc.stats()["bootstrap"]["snapshot"]["generations"] == {
            p: m.generation for p, m in second.items()
        }
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)


@pytest.mark.kafka
def test_the_streams_worker_writes_snapshots_an_sdk_bootstraps_from(
    kafka_bootstrap: str, log_topic: str, tmp_path: Path
) -> None:
    secret = base64.urlsafe_b64encode(b"n" * 32).rstrip(b"=").decode()
    env = {
        **worker_env(kafka_bootstrap, log_topic, tmp_path / "data"),
        "REVOCAST_SNAPSHOT_SIGNING_KEY": f"snap-1:hmac:{secret}",
        "REVOCAST_MAX_TOKEN_LIFETIME": str(_LIFETIME),
        "REVOCAST_STREAMS_SNAPSHOT_INTERVAL_SECONDS": "0.5",
    }
    fill(kafka_bootstrap, log_topic, "worker", 500, seed=8)
    ends = end_offsets(kafka_bootstrap, log_topic)
    worker = Worker(env, tmp_path / "worker.log")
    try:
        worker.start()

        def covered() -> bool:
            consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
            try:
                read = read_snapshots(
                    consumer,
                    f"{log_topic}.snapshots",
                    log_topic,
                    range(3),
                    EventVerifier([SNAPSHOT_KEY.verification_key()]),
                    bounds=None,
                    topic_id=None,
                    lifetime=_LIFETIME,
                    timeout_ms=10_000,
                    poll_timeout_ms=200,
                    stop=threading.Event(),
                )
            finally:
                consumer.close()
            return all(
                p in read.accepted and read.accepted[p][0].offset >= end - 1
                for p, end in ends.items()
            )

        wait_until(covered, timeout=90, message="the worker's snapshots to cover the log")
        clock = FakeClock()
        with client(kafka_bootstrap, log_topic, clock) as rc:
            assert rc.wait_until_ready(60)
            assert rc.stats()["bootstrap"]["mode"] == "snapshot"
            assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
    finally:
        worker.ensure_dead()
        delete_worker_topics(kafka_bootstrap, log_topic)


@pytest.mark.kafka
def test_a_record_signed_by_a_key_the_snapshotter_lacks_stays_after_the_snapshot(
    kafka_bootstrap: str, log_topic: str
) -> None:
    """A key rotation half rolled out: a service that trusts the new key applies the record
    from the log, so a snapshot must not cover it (the snapshotter, without the key, could
    only drop it)."""
    rotated = EventCodec(signer=EventSigner(SigningKey.hmac("rotated", b"r" * 32)))
    now = datetime.now(UTC)
    records = [
        SIGNING_CODEC.encode(
            TokenRevoked(issuer="t", jti="a", expires_at=now + timedelta(hours=1))
        ),
        rotated.encode(TokenRevoked(issuer="t", jti="b", expires_at=now + timedelta(hours=1))),
        SIGNING_CODEC.encode(
            TokenRevoked(issuer="t", jti="c", expires_at=now + timedelta(hours=1))
        ),
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for r in records:
            producer.send(log_topic, value=r.value, headers=list(r.headers), partition=0)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    snapshotter = Snapshotter(streams_settings(kafka_bootstrap, log_topic))
    manifests = snapshotter.catch_up(60)
    assert manifests[0].offset == 0, "the snapshot covers a record it could not verify"
    assert snapshotter.counters["skipped.unknown_key"] == 1


def live_chunk_keys(bootstrap: str, topic: str, partition: int) -> set[bytes]:
    """The chunk keys of snapshot partition ``partition`` that compaction would keep: the
    last record of each key, unless it is a tombstone."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tp = TopicPartition(f"{topic}.snapshots", partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end: int = consumer.end_offsets([tp])[tp]
        live: dict[bytes, bool] = {}

        def read_to_end() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                live.update({r.key: r.value is not None for r in records})
            return bool(consumer.position(tp) >= end)

        wait_until(read_to_end, timeout=30, message="the snapshot partition read to its end")
    finally:
        consumer.close()
    return {key for key, alive in live.items() if alive and not key.endswith(b"/manifest")}


def assert_only_the_latest_generation_is_live(
    bootstrap: str, topic: str, manifests: dict[int, Manifest]
) -> None:
    for p, manifest in manifests.items():
        listed = {chunk_key(p, manifest.generation, i) for i in range(len(manifest.chunks))}
        assert live_chunk_keys(bootstrap, topic, p) == listed, f"partition {p}"


@pytest.mark.kafka
def test_a_partition_changing_owner_leaves_no_generation_behind(
    kafka_bootstrap: str, log_topic: str
) -> None:
    """A rebalance moves the log partitions to another worker, then back: each new owner
    tombstones the generation the previous owner wrote last, not only its own last one."""
    s = streams_settings(kafka_bootstrap, log_topic)
    fill(kafka_bootstrap, log_topic, "owner-a", 200, seed=9)
    a = Snapshotter(s)
    b = Snapshotter(s, owned=())
    a.catch_up(60)
    assert b.catch_up(60)  # b resumed from a's snapshots, wrote nothing
    fill(kafka_bootstrap, log_topic, "owner-a-again", 100, seed=10)
    a.catch_up(60)
    a.own(())
    b.own(None)
    fill(kafka_bootstrap, log_topic, "owner-b", 100, seed=11)
    assert_only_the_latest_generation_is_live(kafka_bootstrap, log_topic, b.catch_up(60))
    b.own(())
    a.own(None)
    fill(kafka_bootstrap, log_topic, "owner-a-back", 100, seed=12)
    assert_only_the_latest_generation_is_live(kafka_bootstrap, log_topic, a.catch_up(60))


@pytest.mark.kafka
def test_a_paused_snapshotter_s_late_generation_is_an_older_snapshot_sdks_replay_forward_from(
    kafka_bootstrap: str, log_topic: str
) -> None:
    """faust has no fencing: a worker SIGSTOPped with log records applied but not yet
    written resumes after another worker took its partitions over and wrote a newer
    generation, and writes its own (its interval has passed) before it learns it lost them.
    That late generation shadows the new owner's (SDKs take the last manifest) and
    tombstones its chunks, but it is a complete snapshot up to the offset it names: an SDK
    loads it and replays the log after it, and misses no rule. The owner's next write
    replaces it."""
    s = streams_settings(kafka_bootstrap, log_topic)
    fill(kafka_bootstrap, log_topic, "zombie-first", 200, seed=21)
    zombie = Snapshotter(s)
    zombie.catch_up(60)
    fill(kafka_bootstrap, log_topic, "zombie-unwritten", 150, seed=22)
    consumer, producer = zombie._open()
    try:
        # Applied, not yet written: then paused.
        tps = zombie._prepare(consumer, producer)
        ends = consumer.end_offsets(list(tps.values()))

        def applied() -> bool:
            zombie._poll(consumer)
            return all(consumer.position(tp) >= ends[tp] for tp in tps.values())

        wait_until(applied, timeout=30, message="the paused snapshotter to apply the 2nd fill")
        owner = Snapshotter(s)
        fill(kafka_bootstrap, log_topic, "owner", 150, seed=23)
        newer = owner.catch_up(60)
        # Resumed: it writes before its worker learns of the rebalance.
        zombie._write(consumer, producer)
    finally:
        zombie._close_clients(consumer, producer)
    late = dict(zombie._written)
    for p, manifest in late.items():
        assert manifest.offset < newer[p].offset
        assert manifest.generation > newer[p].generation
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        boot = rc.stats()["bootstrap"]
        assert boot["snapshot_refused"] == {}
        assert boot["snapshot"]["offsets"] == {p: m.offset for p, m in late.items()}
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
    fill(kafka_bootstrap, log_topic, "owner-again", 50, seed=24)
    latest = owner.catch_up(60)
    assert all(latest[p].generation > late[p].generation for p in late)
    assert_only_the_latest_generation_is_live(kafka_bootstrap, log_topic, latest)


def recreate(bootstrap: str, topic: str, partitions: int = 3) -> None:
    """Delete ``topic`` and create it again under the same name, as an operator might."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.delete_topics([topic], timeout_ms=30_000)

        def created() -> bool:
            try:  # refused while the deletion is still in progress
                admin.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=30_000)
            except TopicAlreadyExistsError:
                return False
            return True

        def led() -> bool:
            (info,) = admin.describe_topics([topic])
            ok = [p for p in info["partitions"] if p["error_code"] == 0 and p["leader_id"] >= 0]
            return bool(info["error_code"] == 0 and len(ok) == partitions)

        wait_until(created, timeout=60, message=f"{topic} created again")
        wait_until(led, timeout=30, message=f"leaders for the new {topic}")
    finally:
        admin.close()


def log_id(bootstrap: str, topic: str) -> Any:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        return topic_id(consumer, topic)
    finally:
        consumer.close()


@pytest.mark.kafka
def test_snapshots_of_a_deleted_and_recreated_log_are_refused(
    kafka_bootstrap: str, log_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    fill(kafka_bootstrap, log_topic, "old-log", 150, seed=13)
    writer = Snapshotter(streams_settings(kafka_bootstrap, log_topic))
    old = writer.catch_up(60)
    old_id = log_id(kafka_bootstrap, log_topic)
    assert old_id is not None, "kafka-python no longer exposes topic ids where we look"
    assert {m.topic_id for m in old.values()} == {old_id}
    recreate(kafka_bootstrap, log_topic)
    assert log_id(kafka_bootstrap, log_topic) not in (None, old_id)
    fill(kafka_bootstrap, log_topic, "new-log", 600, seed=14)
    ends = end_offsets(kafka_bootstrap, log_topic)
    # Longer than the old log: the offset checks alone would take the old snapshots and
    # skip the new log's records up to their offsets.
    assert all(ends[p] > m.offset + 1 for p, m in old.items())
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        boot = rc.stats()["bootstrap"]
        assert boot["snapshot_refused"] == {"other_incarnation": 3}
        assert set(boot["partitions"].values()) == {"log"}
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
    assert "snapshot of log partition 0 refused (other_incarnation)" in caplog.text
    # The snapshotter that wrote them starts over on the new log, and its snapshots load.
    new = writer.catch_up(60)
    assert writer.counters["log_recreated"] == 1
    assert {p: m.offset for p, m in new.items()} == {p: end - 1 for p, end in ends.items()}
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        assert rc.stats()["bootstrap"]["partitions"] == {
            0: "snapshot",
            1: "snapshot",
            2: "snapshot",
        }
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
    assert_only_the_latest_generation_is_live(kafka_bootstrap, log_topic, new)


@pytest.mark.kafka
def test_a_running_snapshotter_starts_over_when_its_log_is_recreated(
    kafka_bootstrap: str, log_topic: str
) -> None:
    fill(kafka_bootstrap, log_topic, "old-running", 150, seed=15)
    s = dataclasses.replace(
        streams_settings(kafka_bootstrap, log_topic), snapshot_interval_seconds=0.2
    )
    running = Snapshotter(s)
    old_id = log_id(kafka_bootstrap, log_topic)

    def snapshots_of(expected_id: Any, ends: dict[int, int]) -> Callable[[], bool]:
        def covered() -> bool:
            consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
            try:
                read = read_snapshots(
                    consumer,
                    f"{log_topic}.snapshots",
                    log_topic,
                    range(3),
                    EventVerifier([SNAPSHOT_KEY.verification_key()]),
                    bounds=None,
                    topic_id=None,
                    lifetime=_LIFETIME,
                    timeout_ms=10_000,
                    poll_timeout_ms=200,
                    stop=threading.Event(),
                )
            finally:
                consumer.close()
            return all(
                p in read.accepted
                and read.accepted[p][0].topic_id == expected_id
                and read.accepted[p][0].offset == end - 1
                for p, end in ends.items()
            )

        return covered

    running.start()
    try:
        ends = end_offsets(kafka_bootstrap, log_topic)
        wait_until(snapshots_of(old_id, ends), timeout=60, message="snapshots of the old log")
        recreate(kafka_bootstrap, log_topic)
        fill(kafka_bootstrap, log_topic, "new-running", 600, seed=16)
        ends = end_offsets(kafka_bootstrap, log_topic)
        new_id = log_id(kafka_bootstrap, log_topic)
        wait_until(snapshots_of(new_id, ends), timeout=90, message="snapshots of the new log")
    finally:
        running.close(30)
    clock = FakeClock()
    with client(kafka_bootstrap, log_topic, clock) as rc:
        assert rc.wait_until_ready(60)
        assert rc.stats()["bootstrap"]["partitions"] == {
            0: "snapshot",
            1: "snapshot",
            2: "snapshot",
        }
        assert rc.state.snapshot() == log_replay(kafka_bootstrap, log_topic, clock)
