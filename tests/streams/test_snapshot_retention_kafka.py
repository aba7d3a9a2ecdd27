"""Snapshots keep rules whose log records retention deleted, against a real broker.

Blocks and revoked keys never expire, but their log records do: a snapshotter that cannot
continue from its own snapshot (a rotated snapshot key, snapshots turned on late) must take
them from the state topic, never from the log's retained head alone, or hold. In every test
here the log's head is deleted (``DeleteRecords``) before the snapshotter in question runs.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from consumer_sdk import Revocast, RevokedBy, TokenRevokedError
from revocation_events import (
    EventCodec,
    EventSigner,
    KafkaSettings,
    KeyRevoked,
    SigningKey,
    SubjectBlocked,
    TokenRevoked,
)
from streams import StreamsSettings
from streams._records import marker_record
from streams._snapshot import Snapshotter
from streams._topics import resume_offsets
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import FakeClock, settings, token
from tests.streams._support import KEY, SIGNING_CODEC
from tests.streams._worker import (
    Worker,
    delete_worker_topics,
    end_offsets,
    publish,
    wait_for_state,
    worker_env,
)

_LIFETIME = 600.0
SNAP_1 = SigningKey.hmac("snap-1", b"1" * 32)
SNAP_2 = SigningKey.hmac("snap-2", b"2" * 32)
LEAKED = "leaked"
"""A JWT signing key the issuer reports compromised (``key.revoked``)."""
JWT_KEYS = {LEAKED: b"l" * 32, "current": b"c" * 32}
BLOCKED = "mallory"


@pytest.fixture
def log_topic(make_topic: MakeTopic, kafka_bootstrap: str) -> Iterator[str]:
    topic = make_topic(partitions=3)
    yield topic
    delete_worker_topics(kafka_bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        admin.delete_topics([f"{topic}.snapshots"], timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()


def snapshotter_settings(
    bootstrap: str, topic: str, key: SigningKey, *previous: SigningKey
) -> StreamsSettings:
    return StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
        verification_keys=(KEY.verification_key(),),
        snapshot_signing_key=key,
        snapshot_previous_keys=tuple(k.verification_key() for k in previous),
        max_token_lifetime=_LIFETIME,
    )


def publish_rules(bootstrap: str, topic: str) -> None:
    """A block and a key revocation (never expire), between revoked jtis on every partition."""
    hour = datetime.now(UTC) + timedelta(hours=1)
    events = [
        *(TokenRevoked(issuer="t", jti=f"j{n}", sub=f"u{n}", expires_at=hour) for n in range(30)),
        SubjectBlocked(issuer="t", sub=BLOCKED),
        KeyRevoked(issuer="t", kid=LEAKED),
        *(TokenRevoked(issuer="t", jti=f"k{n}", sub=f"v{n}", expires_at=hour) for n in range(30)),
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        publish(producer, topic, [SIGNING_CODEC.encode(e) for e in events])
    finally:
        producer.close(timeout=10)


def delete_log_head(bootstrap: str, topic: str) -> None:
    """What retention does to old segments: every record so far is gone."""
    ends = end_offsets(bootstrap, topic)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.delete_records({TopicPartition(topic, p): end for p, end in ends.items()})
    finally:
        admin.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        begins = consumer.beginning_offsets(tps, timeout_ms=10_000)
    finally:
        consumer.close()
    assert {tp.partition: b for tp, b in begins.items()} == ends
    assert any(ends.values())


def state_from_worker(bootstrap: str, topic: str, workdir: Path) -> None:
    """Run the real streams worker (without snapshots) until its state topic covers the log."""
    worker = Worker(worker_env(bootstrap, topic, workdir / "data"), workdir / "worker.log")
    try:
        worker.start()
        wait_for_state(bootstrap, topic, timeout=60)
        assert worker.stop() == 0
    finally:
        worker.ensure_dead()


def sdk(bootstrap: str, topic: str, trusted: SigningKey) -> Revocast:
    return Revocast(
        settings(
            kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
            bootstrap="state",
            jwt_keys=JWT_KEYS,
            event_keys=(KEY.verification_key(),),
            snapshot_keys=(trusted.verification_key(),),
            max_token_lifetime=_LIFETIME,
            heartbeat_interval=0.0,
        ),
        clock=FakeClock(),
    )


def assert_the_snapshot_refuses_the_tokens(bootstrap: str, topic: str, key: SigningKey) -> None:
    """An SDK trusting only ``key`` bootstraps every partition from its snapshot and refuses
    a token of the blocked subject and one signed by the revoked key."""
    with sdk(bootstrap, topic, key) as rc:
        assert rc.wait_until_ready(60)
        boot = rc.stats()["bootstrap"]
        assert boot["partitions"] == {0: "snapshot", 1: "snapshot", 2: "snapshot"}, boot
        with pytest.raises(TokenRevokedError) as blocked:
            rc.verify(token(key=JWT_KEYS["current"], kid="current", sub=BLOCKED))
        assert blocked.value.rule is RevokedBy.BLOCKED
        with pytest.raises(TokenRevokedError) as leaked:
            rc.verify(token(key=JWT_KEYS[LEAKED], kid=LEAKED, sub="alice"))
        assert leaked.value.rule is RevokedBy.KEY
        assert rc.verify(token(key=JWT_KEYS["current"], kid="current", sub="alice"))


@pytest.mark.kafka
@pytest.mark.parametrize("earlier", ["rotated-key", "no-earlier-snapshot"])
def test_blocks_and_revoked_keys_whose_log_records_are_gone_reach_a_new_snapshot(
    kafka_bootstrap: str, log_topic: str, tmp_path: Path, earlier: str
) -> None:
    """The review's finding: after a snapshot key rotation (or with snapshots turned on only
    now) the snapshotter rebuilt from the log's retained head, and its snapshot, which SDKs
    trust, forgot the block and the revoked key. It now takes them from the state topic the
    real worker wrote."""
    publish_rules(kafka_bootstrap, log_topic)
    state_from_worker(kafka_bootstrap, log_topic, tmp_path)
    if earlier == "rotated-key":
        first = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1))
        assert sorted(first.catch_up(60)) == [0, 1, 2]
    delete_log_head(kafka_bootstrap, log_topic)
    ends = end_offsets(kafka_bootstrap, log_topic)

    rotated = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_2))
    manifests = rotated.catch_up(60)

    assert_the_snapshot_refuses_the_tokens(kafka_bootstrap, log_topic, SNAP_2)
    assert rotated.counters["resumed.state"] == 3
    assert {p: m.offset for p, m in manifests.items()} == {p: e - 1 for p, e in ends.items()}


@pytest.mark.kafka
def test_a_rotated_snapshotter_continues_from_a_snapshot_signed_by_a_previous_key(
    kafka_bootstrap: str, log_topic: str
) -> None:
    """REVOCAST_SNAPSHOT_PREVIOUS_KEYS: the old generation is the only copy of the rules
    here (no state topic at all), and the rotated snapshotter continues from it."""
    publish_rules(kafka_bootstrap, log_topic)
    Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1)).catch_up(60)
    delete_log_head(kafka_bootstrap, log_topic)

    rotated = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_2, SNAP_1))
    manifests = rotated.catch_up(60)

    assert_the_snapshot_refuses_the_tokens(kafka_bootstrap, log_topic, SNAP_2)
    assert rotated.counters["resumed.snapshot"] == 3
    assert sorted(manifests) == [0, 1, 2]


def snapshot_records(bootstrap: str, topic: str) -> int:
    ends = end_offsets(bootstrap, f"{topic}.snapshots")
    return sum(ends.values())


@pytest.mark.kafka
def test_without_a_snapshot_or_a_state_topic_a_truncated_log_gets_no_snapshot(
    kafka_bootstrap: str, log_topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Fail safe: the retained head alone cannot tell what was blocked before it, so no
    snapshot claims it; SDKs bootstrap from the log (or a state topic made later)."""
    publish_rules(kafka_bootstrap, log_topic)
    Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1)).catch_up(60)
    written = snapshot_records(kafka_bootstrap, log_topic)
    delete_log_head(kafka_bootstrap, log_topic)

    rotated = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_2))
    assert rotated.catch_up(60) == {}

    assert rotated.counters["holds.no_state_topic"] == 3
    assert snapshot_records(kafka_bootstrap, log_topic) == written, "a snapshot was written"
    assert "log partition 0: no snapshot is written (no_state_topic)" in caplog.text


def write_state(
    bootstrap: str,
    topic: str,
    records: list[Any],
    markers: dict[int, int],
    topic_id: uuid.UUID | None = None,
) -> None:
    """A state topic as the worker makes it: ``records`` (encoded events) in every partition,
    then that partition's offset marker."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics(
            [NewTopic(f"{topic}.state", 3, 1, topic_configs={"cleanup.policy": "compact"})],
            timeout_ms=30_000,
        )
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for p in markers:
            for n, record in enumerate(records):
                producer.send(
                    f"{topic}.state",
                    key=f"rule-{n}".encode(),
                    value=record.value,
                    headers=list(record.headers),
                    partition=p,
                )
        producer.flush(30)
    finally:
        producer.close(timeout=10)
    write_markers(bootstrap, topic, markers, topic_id)


def write_markers(
    bootstrap: str, topic: str, markers: dict[int, int], topic_id: uuid.UUID | None = None
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for p, marker in markers.items():
            out = marker_record(topic, p, marker, topic_id=topic_id)
            producer.send(f"{topic}.state", key=out.key, value=out.value, partition=p)
        producer.flush(30)
    finally:
        producer.close(timeout=10)


@pytest.mark.kafka
@pytest.mark.parametrize("case", ["unknown_key", "marker_outside_log", "other_incarnation"])
def test_a_state_topic_that_cannot_be_complete_holds_the_snapshot(
    kafka_bootstrap: str, log_topic: str, case: str
) -> None:
    """A state record signed by an event key the worker lacks (services that have it
    enforce that block), a marker older than the log's first record (the records in
    between are in neither), or markers of a deleted log of the same name (its rules):
    no snapshot of those partitions."""
    publish_rules(kafka_bootstrap, log_topic)
    delete_log_head(kafka_bootstrap, log_topic)
    begins = end_offsets(kafka_bootstrap, log_topic)
    block = SubjectBlocked(issuer="t", sub=BLOCKED)
    if case == "unknown_key":
        rotated = EventCodec(signer=EventSigner(SigningKey.hmac("rotated", b"r" * 32)))
        write_state(
            kafka_bootstrap,
            log_topic,
            [SIGNING_CODEC.encode(KeyRevoked(issuer="t", kid=LEAKED)), rotated.encode(block)],
            {p: b - 1 for p, b in begins.items()},
        )
        held = {p for p, b in begins.items() if b > 0}
    elif case == "marker_outside_log":
        write_state(
            kafka_bootstrap, log_topic, [SIGNING_CODEC.encode(block)], dict.fromkeys(begins, 0)
        )
        held = {p for p, b in begins.items() if b > 1}
    else:
        deleted_log = uuid.uuid4()
        markers = {p: b - 1 for p, b in begins.items()}
        write_state(kafka_bootstrap, log_topic, [SIGNING_CODEC.encode(block)], markers, deleted_log)
        held = {p for p, b in begins.items() if b > 0}
    assert held, f"log start offsets {begins}: nothing to hold"

    snapshotter = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1))
    manifests = snapshotter.catch_up(60)

    assert set(manifests).isdisjoint(held)
    assert snapshotter.counters[f"holds.{case}"] == len(held)


@pytest.mark.kafka
def test_a_held_partition_is_snapshotted_once_the_state_topic_has_a_marker(
    kafka_bootstrap: str, log_topic: str
) -> None:
    """Snapshots turned on while the processor has not written its first marker yet: the
    running snapshotter holds, then looks again every interval."""
    publish_rules(kafka_bootstrap, log_topic)
    delete_log_head(kafka_bootstrap, log_topic)
    ends = end_offsets(kafka_bootstrap, log_topic)
    s = dataclasses.replace(
        snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1), snapshot_interval_seconds=0.2
    )
    running = Snapshotter(s)
    running.start()
    try:
        wait_until(
            lambda: running.counters["holds.no_state_topic"] == 3,
            timeout=30,
            message="the snapshotter to hold every partition",
        )
        assert running.counters["snapshots"] == 0
        rules = [
            SIGNING_CODEC.encode(SubjectBlocked(issuer="t", sub=BLOCKED)),
            SIGNING_CODEC.encode(KeyRevoked(issuer="t", kid=LEAKED)),
        ]
        write_state(kafka_bootstrap, log_topic, rules, {p: e - 1 for p, e in ends.items()})
        wait_until(
            lambda: running.counters["snapshots"] == 3,
            timeout=30,
            message="snapshots of the partitions once held",
        )
    finally:
        running.close(30)
    assert running.counters["resumed.state"] == 3
    assert_the_snapshot_refuses_the_tokens(kafka_bootstrap, log_topic, SNAP_1)


@pytest.mark.kafka
def test_a_marker_past_the_log_end_read_at_start_is_usable(
    kafka_bootstrap: str, log_topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live processor marks records published while the snapshotter starts: the marker is
    judged against the log as it is after the marker was read, not before."""
    publish_rules(kafka_bootstrap, log_topic)
    delete_log_head(kafka_bootstrap, log_topic)
    rules = [
        SIGNING_CODEC.encode(SubjectBlocked(issuer="t", sub=BLOCKED)),
        SIGNING_CODEC.encode(KeyRevoked(issuer="t", kid=LEAKED)),
    ]
    ends = end_offsets(kafka_bootstrap, log_topic)
    write_state(kafka_bootstrap, log_topic, rules, {p: e - 1 for p, e in ends.items()})

    def meanwhile(settings: StreamsSettings, partitions: Any, **options: Any) -> Any:
        publish_rules(kafka_bootstrap, log_topic)
        moved = end_offsets(kafka_bootstrap, log_topic)
        write_markers(kafka_bootstrap, log_topic, {p: e - 1 for p, e in moved.items()})
        return resume_offsets(settings, partitions, **options)

    monkeypatch.setattr("streams._snapshot.resume_offsets", meanwhile)
    snapshotter = Snapshotter(snapshotter_settings(kafka_bootstrap, log_topic, SNAP_1))
    snapshotter.catch_up(60)

    assert snapshotter.counters["resumed.state"] == 3
    assert_the_snapshot_refuses_the_tokens(kafka_bootstrap, log_topic, SNAP_1)
