from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from producer import InvalidRevocationError, Publisher, PublishError, PublishResult
from revocation_events import (
    BaseEvent,
    MalformedEventError,
    SigningKey,
    SubjectBlocked,
    SubjectUnblocked,
    TokenRevoked,
    record_key,
)
from tests._kafka_fixtures import MakeTopic
from tests.producer._support import read_records, verifying_codec
from tests.producer.conftest import MakeSettings

NOW = datetime.now(UTC).replace(microsecond=0)
EXP = NOW + timedelta(minutes=30)
LIFETIME = timedelta(seconds=3600)

# action name -> (call, expected fields, expected record key)
ACTIONS: dict[str, tuple[Callable[[Publisher], PublishResult], dict[str, Any], bytes]] = {
    "revoke_token": (
        lambda p: p.revoke_token("jti-1", expires_at=EXP, sub="alice", reason="logout"),
        {"type": "token.revoked", "jti": "jti-1", "sub": "alice", "expires_at": EXP},
        b"alice",
    ),
    "revoke_token without subject": (
        lambda p: p.revoke_token("jti-2", expires_at=int(EXP.timestamp())),
        {"type": "token.revoked", "jti": "jti-2", "sub": None, "expires_at": EXP},
        b"jti:jti-2",
    ),
    "revoke_session": (
        lambda p: p.revoke_session("sid-1", sub="bob", reason="logout"),
        {"type": "session.revoked", "sid": "sid-1", "sub": "bob", "expires_at": NOW + LIFETIME},
        b"bob",
    ),
    "revoke_subject": (
        lambda p: p.revoke_subject("carol", reason="password_change"),
        {
            "type": "subject.tokens_revoked",
            "sub": "carol",
            "issued_before": NOW,
            "expires_at": NOW + LIFETIME,
        },
        b"carol",
    ),
    "revoke_subject with watermark": (
        lambda p: p.revoke_subject("carol", issued_before=NOW - timedelta(minutes=10)),
        {
            "issued_before": NOW - timedelta(minutes=10),
            "expires_at": NOW - timedelta(minutes=10) + LIFETIME,
        },
        b"carol",
    ),
    "block_subject": (
        lambda p: p.block_subject("dave", reason="abuse"),
        {"type": "subject.blocked", "sub": "dave", "expires_at": None},
        b"dave",
    ),
    "unblock_subject": (
        lambda p: p.unblock_subject("dave"),
        {"type": "subject.unblocked", "sub": "dave", "expires_at": NOW + LIFETIME},
        b"dave",
    ),
    "delete_subject": (
        lambda p: p.delete_subject("erin", reason="gdpr"),
        {"type": "subject.deleted", "sub": "erin", "expires_at": NOW + LIFETIME},
        b"erin",
    ),
    "bump_subject_version": (
        lambda p: p.bump_subject_version("frank", min_version=7),
        {"type": "subject.version_bumped", "min_version": 7, "expires_at": NOW + LIFETIME},
        b"frank",
    ),
    "revoke_key": (
        lambda p: p.revoke_key("old-kid", reason="leaked"),
        {"type": "key.revoked", "kid": "old-kid", "expires_at": None},
        b"kid:old-kid",
    ),
    "revoke_all": (
        lambda p: p.revoke_all(reason="incident"),
        {"type": "global.tokens_revoked", "issued_before": NOW, "expires_at": NOW + LIFETIME},
        b"global",
    ),
}


@pytest.mark.kafka
@pytest.mark.parametrize("delivery", ["direct", "outbox"])
@pytest.mark.parametrize("action", ACTIONS.values(), ids=ACTIONS.keys())
def test_every_action_round_trips_signed_with_its_fields_and_key(
    action: tuple[Callable[[Publisher], PublishResult], dict[str, Any], bytes],
    delivery: str,
    make_settings: MakeSettings,
    make_topic: MakeTopic,
    kafka_bootstrap: str,
    signing_key: SigningKey,
) -> None:
    call, fields, key = action
    topic = make_topic(partitions=3)
    settings = make_settings(bootstrap=kafka_bootstrap, topic=topic, delivery=delivery)
    with Publisher(settings, clock=lambda: NOW) as publisher:
        result = call(publisher)
        assert publisher.pending_count() == 0

    assert not result.queued
    (rec,) = read_records(kafka_bootstrap, topic, 1)
    assert (rec.partition, rec.offset) == (result.partition, result.offset)
    assert rec.key == key
    event = verifying_codec(signing_key).decode(rec.value, rec.headers)
    assert event.id == result.event_id
    assert event.issuer == "identity-test"
    assert event.occurred_at == NOW
    assert event.key_id == signing_key.kid
    for name, value in fields.items():
        assert getattr(event, name, None) == value, name


@pytest.mark.kafka
def test_tampered_record_fails_verification(
    make_settings: MakeSettings,
    make_topic: MakeTopic,
    kafka_bootstrap: str,
    signing_key: SigningKey,
) -> None:
    topic = make_topic(partitions=1)
    with Publisher(make_settings(bootstrap=kafka_bootstrap, topic=topic)) as publisher:
        publisher.block_subject("mallory")
    (rec,) = read_records(kafka_bootstrap, topic, 1)
    codec = verifying_codec(signing_key)
    codec.decode(rec.value, rec.headers)  # the original verifies
    tampered = rec.value.replace(b"mallory", b"mallorz")
    with pytest.raises(MalformedEventError) as info:
        codec.decode(tampered, rec.headers)
    assert info.value.reason == "bad_signature"


@pytest.mark.kafka
@pytest.mark.parametrize("delivery", ["direct", "outbox"])
def test_each_subjects_events_keep_publish_order_across_partitions(
    delivery: str, make_settings: MakeSettings, make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    topic = make_topic(partitions=6)
    subjects = [f"user-{n}" for n in range(1000)]
    events: list[BaseEvent] = [
        SubjectBlocked(issuer="identity-test", sub=sub)
        if kind == "block"
        else SubjectUnblocked(issuer="identity-test", sub=sub, expires_at=EXP)
        for kind in ("block", "unblock", "block")
        for sub in subjects
    ]
    settings = make_settings(bootstrap=kafka_bootstrap, topic=topic, delivery=delivery)
    with Publisher(settings) as publisher:
        results = []
        for start in range(0, len(events), 250):
            results += publisher.publish_many(events[start : start + 250])
    assert not any(r.queued for r in results)

    published: dict[bytes, list[str]] = defaultdict(list)
    for event in events:
        published[record_key(event)].append(str(event.id))
    records = read_records(kafka_bootstrap, topic, len(events))
    received: dict[bytes, list[str]] = defaultdict(list)
    for rec in records:
        received[rec.key].append(rec.value.split(b'"id":"')[1][:36].decode())
    assert len({r.partition for r in records}) == 6
    assert received == published


@pytest.mark.kafka
def test_concurrent_publishers_threads_all_get_acks(
    make_settings: MakeSettings, make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    topic = make_topic(partitions=3)
    results: list[PublishResult] = []
    lock = threading.Lock()
    with Publisher(make_settings(bootstrap=kafka_bootstrap, topic=topic)) as publisher:

        def work(n: int) -> None:
            for i in range(20):
                result = publisher.revoke_session(f"sid-{n}-{i}", sub=f"user-{n}")
                with lock:
                    results.append(result)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert len(results) == 160
    assert not any(r.queued for r in results)
    assert len({r.event_id for r in results}) == 160
    read_records(kafka_bootstrap, topic, 160)


@pytest.mark.kafka
def test_outbox_mode_returns_queued_when_the_ack_is_late(
    make_settings: MakeSettings, make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    topic = make_topic(partitions=1)
    settings = make_settings(bootstrap=kafka_bootstrap, topic=topic, ack_timeout=1e-6)
    with Publisher(settings) as publisher:
        result = publisher.block_subject("slow")
        assert result.queued
        assert publisher.wait_until_drained(timeout=30)
    (rec,) = read_records(kafka_bootstrap, topic, 1)
    assert str(result.event_id).encode() in rec.value


def test_direct_mode_raises_publish_error_within_a_bounded_time(
    make_settings: MakeSettings,
) -> None:
    settings = make_settings(delivery="direct", max_block=1, delivery_timeout=1)
    with Publisher(settings) as publisher:
        started = time.monotonic()
        with pytest.raises(PublishError, match="no Kafka broker reachable"):
            publisher.block_subject("alice")
        assert time.monotonic() - started < 5


@pytest.mark.kafka
def test_missing_topic_fails_with_publish_error_instead_of_being_auto_created(
    make_settings: MakeSettings, kafka_bootstrap: str
) -> None:
    # Even against a broker with auto.create.topics.enable=true (kafka-python 3.0.12 ignores
    # allow_auto_create_topics unless the publisher re-applies it).
    topic = f"missing-{uuid.uuid4().hex[:12]}"
    settings = make_settings(bootstrap=kafka_bootstrap, topic=topic, delivery="direct", max_block=1)
    with Publisher(settings) as publisher:
        started = time.monotonic()
        with pytest.raises(PublishError) as info:
            publisher.block_subject("alice")
        assert time.monotonic() - started < 10
    assert isinstance(info.value.__cause__, KafkaError)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_closed_publisher_refuses_to_publish(make_settings: MakeSettings) -> None:
    publisher = Publisher(make_settings())
    publisher.close()
    publisher.close()  # idempotent
    with pytest.raises(PublishError, match="closed"):
        publisher.block_subject("alice")
    for call in (publisher.pending_count, lambda: publisher.wait_until_drained(1.0)):
        with pytest.raises(PublishError, match="closed"):  # not sqlite3.ProgrammingError
            call()


def test_drainer_is_a_named_daemon_thread_that_stops_on_close(
    make_settings: MakeSettings,
) -> None:
    with Publisher(make_settings()):
        (drainer,) = [t for t in threading.enumerate() if t.name == "revocast-outbox-drainer"]
        assert drainer.daemon
    drainer.join(5)
    assert not drainer.is_alive()


def test_direct_mode_has_no_outbox(make_settings: MakeSettings) -> None:
    with Publisher(make_settings(delivery="direct")) as publisher:
        assert publisher.pending_count() == 0
    assert not make_settings().outbox_path.exists()


@pytest.mark.parametrize(
    "events",
    [None, 1, TokenRevoked(issuer="i", jti="j", expires_at=EXP)],
    ids=["none", "int", "one_event"],
)
def test_publish_many_of_something_not_iterable_is_an_invalid_revocation(
    offline_publisher: Publisher, events: Any
) -> None:
    with pytest.raises(InvalidRevocationError, match="iterable"):  # not a bare TypeError
        offline_publisher.publish_many(events)
    assert offline_publisher.pending_count() == 0


@pytest.mark.parametrize(
    "now", [time.time, lambda: None, lambda: "now"], ids=["time_time", "none", "str"]
)
def test_clock_returning_something_else_than_a_datetime_is_refused(
    make_settings: MakeSettings, now: Callable[[], Any]
) -> None:
    with Publisher(make_settings(), clock=now) as publisher:
        with pytest.raises(InvalidRevocationError, match="clock"):  # not an AttributeError
            publisher.block_subject("s")
        assert publisher.pending_count() == 0


def test_a_publisher_inherited_through_fork_refuses_to_publish(
    offline_publisher: Publisher,
) -> None:
    # gunicorn --preload forks workers after the app (and its publisher) is built. The child
    # has no drainer, a copy of the parent's SQLite connection (SQLite: using it after fork can
    # corrupt the file) and locks a parent thread may have held: it used to append through that
    # connection and report queued=True.
    parent_end, child_end = multiprocessing.get_context("fork").Pipe(duplex=False)

    def child() -> None:
        try:
            result = offline_publisher.block_subject("alice")
        except PublishError as exc:
            child_end.send(f"refused: {exc}")
        else:
            child_end.send(f"published: queued={result.queued}")

    process = multiprocessing.get_context("fork").Process(target=child, daemon=True)
    process.start()
    try:
        assert parent_end.poll(30), "the forked child did not answer"
        answer = parent_end.recv()
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()
    assert answer.startswith("refused:"), answer
    assert "fork" in answer
    assert offline_publisher.pending_count() == 0
    offline_publisher.block_subject("alice")  # the parent still publishes
    assert offline_publisher.pending_count() == 1
