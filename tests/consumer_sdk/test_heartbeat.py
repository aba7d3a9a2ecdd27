"""Heartbeats: what an SDK instance publishes for ``revocast status``, and that failures never
hurt it."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from consumer_sdk import (
    ConsumerSettings,
    DataSourceState,
    Revocast,
    SourceErrorKind,
    SourceStatus,
)
from consumer_sdk._heartbeat import Heartbeat, heartbeat_topic
from consumer_sdk._status import StatusProvider
from consumer_sdk.testing import InMemorySource
from revocation_events import KafkaSettings, SettingsError, TokenRevoked
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import FakeClock, settings


class Acked:
    def get(self, timeout: float) -> None:
        return None


@dataclass
class FakeProducer:
    """Records what is sent; ``fail_with`` makes every send raise instead."""

    fail_with: Exception | None = None
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    closed: bool = False

    def send(self, topic: str, *, key: bytes, value: bytes) -> Acked:
        if self.fail_with is not None:
            raise self.fail_with
        self.sent.append((topic, key, value))
        return Acked()

    def close(self, timeout: float) -> None:
        self.closed = True


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def rc(clock: FakeClock) -> Iterator[Revocast]:
    source = InMemorySource()
    client = Revocast(settings(service_name="orders"), clock=clock, source=source)
    source.publish(
        TokenRevoked(issuer="t", jti="j1", expires_at=datetime.now(UTC) + timedelta(hours=1))
    )
    source.set_ready()
    yield client
    client.close()


def test_heartbeat_value_names_the_instance_and_reports_status_entries_and_event_age(
    rc: Revocast, clock: FakeClock
) -> None:
    producer = FakeProducer()
    beat = Heartbeat(rc.settings, rc, clock=clock, producer_factory=lambda _: producer)
    clock.advance(7)
    assert beat.beat()
    ((topic, key, value),) = producer.sent
    doc = json.loads(value)
    assert topic == "revocast.revocations.heartbeats"
    assert key == beat.instance_id.encode() == doc["instance"].encode()
    assert doc["service"] == "orders"
    assert doc["status"] == "valid"
    assert doc["entries"]["jti"] == 1
    assert doc["last_event_age"] == pytest.approx(7.0)
    assert doc["sent_at"] == clock.now
    assert doc["interval"] == 10.0
    assert doc["v"] == 1
    assert isinstance(doc["pid"], int)


def test_heartbeat_says_since_when_the_instance_is_in_its_state_and_for_how_long(
    clock: FakeClock,
) -> None:
    mono = FakeClock(500.0)
    source = InMemorySource()
    client = Revocast(settings(), clock=clock, monotonic=mono, source=source)
    producer = FakeProducer()
    beat = Heartbeat(client.settings, client, clock=clock, producer_factory=lambda _: producer)
    try:
        source.set_ready()
        clock.advance(5)
        mono.advance(5)
        source.interrupt("broker gone")
        interrupted_at = clock.now
        clock.advance(42)
        mono.advance(42)
        assert beat.beat()
    finally:
        client.close()
    doc = json.loads(producer.sent[0][2])
    assert doc["status"] == "interrupted"
    assert doc["status_since"] == interrupted_at
    assert doc["status_age"] == pytest.approx(42.0)


def test_heartbeat_status_age_is_not_shortened_by_the_host_clock_stepping_back(
    clock: FakeClock,
) -> None:
    """The age is what the SDK holds against ``max_staleness``: read on the monotonic clock,
    so NTP stepping the wall clock back 100 s does not make an interruption look younger."""
    mono = FakeClock(500.0)
    source = InMemorySource()
    client = Revocast(settings(), clock=clock, monotonic=mono, source=source)
    producer = FakeProducer()
    beat = Heartbeat(client.settings, client, clock=clock, producer_factory=lambda _: producer)
    try:
        source.set_ready()
        source.interrupt("broker gone")
        clock.advance(-100)
        mono.advance(42)
        assert beat.beat()
    finally:
        client.close()
    doc = json.loads(producer.sent[0][2])
    assert doc["sent_at"] - doc["status_since"] == pytest.approx(-100.0)
    assert doc["status_age"] == pytest.approx(42.0)


@dataclass
class FakeSubject:
    offsets: dict[int, int]
    lag: dict[int, int]
    status: SourceStatus = field(
        default_factory=lambda: SourceStatus(DataSourceState.VALID, since=0.0)
    )
    status_provider: StatusProvider = field(default_factory=lambda: StatusProvider(time.time))

    def stats(self) -> dict[str, Any]:
        return {"positions": self.offsets, "lag": self.lag, "entries": {"jti": 0}}


def test_heartbeat_reports_applied_and_end_offsets_per_partition() -> None:
    producer = FakeProducer()
    subject = FakeSubject(offsets={0: 10, 1: 4}, lag={0: 2, 1: 0})
    beat = Heartbeat(settings(), subject, producer_factory=lambda _: producer)
    assert beat.beat()
    doc = json.loads(producer.sent[0][2])
    assert doc["offsets"] == {"0": 10, "1": 4}
    assert doc["end_offsets"] == {"0": 12, "1": 4}
    assert doc["last_event_age"] is None


def test_a_missing_heartbeat_topic_is_logged_once_and_counted_not_raised(
    rc: Revocast, caplog: pytest.LogCaptureFixture
) -> None:
    producer = FakeProducer(fail_with=KafkaTimeoutError("no metadata"))
    beat = Heartbeat(rc.settings, rc, producer_factory=lambda _: producer)
    with caplog.at_level(logging.WARNING, logger="consumer_sdk.heartbeat"):
        assert not beat.beat()
        assert not beat.beat()
        assert not beat.beat()
    assert beat.failures["topic_missing_or_timeout"] == 3
    assert len(caplog.records) == 1
    assert "revocast status --create" in caplog.records[0].getMessage()
    producer.fail_with = None
    assert beat.beat()
    assert json.loads(producer.sent[0][2])["failures"] == 3


def test_an_unreachable_broker_is_counted_and_the_thread_keeps_beating(rc: Revocast) -> None:
    attempts: list[int] = []

    def factory(config: dict[str, Any]) -> Any:
        attempts.append(1)
        raise OSError("connection refused")

    beat = Heartbeat(settings(heartbeat_interval=0.01), rc, producer_factory=factory)
    beat.start()
    try:
        wait_until(lambda: len(attempts) >= 3, timeout=5, message="three attempts")
    finally:
        beat.close(5)
    assert beat.failures["error"] >= 3
    assert rc.status.state is DataSourceState.VALID


def test_closing_sends_a_last_heartbeat_with_status_off_and_closes_the_producer(
    clock: FakeClock,
) -> None:
    producer = FakeProducer()
    source = InMemorySource()
    client = Revocast(settings(heartbeat_interval=30), clock=clock, source=source)
    source.set_ready()
    beat = Heartbeat(client.settings, client, clock=clock, producer_factory=lambda _: producer)
    beat.start()
    wait_until(lambda: len(producer.sent) == 1, timeout=5, message="first heartbeat")
    client.close()
    beat.close(5)
    statuses = [json.loads(value)["status"] for _, _, value in producer.sent]
    assert statuses == ["valid", "off"]
    assert producer.closed


def test_a_forked_child_gets_a_new_instance_id(rc: Revocast) -> None:
    beat = Heartbeat(rc.settings, rc, producer_factory=lambda _: FakeProducer())
    child = beat.after_fork()
    assert child.instance_id != beat.instance_id
    assert child.topic == beat.topic


def test_heartbeat_settings_come_from_the_environment_and_zero_disables() -> None:
    env = {
        "REVOCAST_ALGORITHMS": "HS256",
        "REVOCAST_JWT_KEY": "k" * 32,
        "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true",
        "REVOCAST_HEARTBEAT_INTERVAL": "0",
        "REVOCAST_HEARTBEAT_TOPIC": "beats",
    }
    parsed = ConsumerSettings.from_env(environ=env)
    assert parsed.heartbeat_interval == 0
    assert heartbeat_topic(parsed) == "beats"
    assert ConsumerSettings.from_env(environ={**env, "REVOCAST_HEARTBEAT_INTERVAL": "2"})
    with pytest.raises(SettingsError, match="heartbeat_interval"):
        settings(heartbeat_interval=-1)


def test_the_default_heartbeat_topic_follows_the_log_topic() -> None:
    kafka = KafkaSettings(topic="rev.log")
    assert heartbeat_topic(settings(kafka=kafka)) == "rev.log.heartbeats"


@pytest.mark.kafka
def test_a_kafka_sdk_publishes_heartbeats_to_the_heartbeat_topic(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    log = make_topic(partitions=2)
    beats = make_topic(partitions=1)
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log)
    client = Revocast(
        settings(kafka=kafka, heartbeat_interval=0.2, heartbeat_topic=beats, service_name="svc")
    )
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
    docs: list[dict[str, Any]] = []
    try:
        assert client.wait_until_ready(30)
        consumer.assign([TopicPartition(beats, 0)])
        consumer.seek_to_beginning()

        def valid_beat() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                docs.extend(json.loads(r.value) for r in records)
            return any(d["status"] == "valid" for d in docs)

        wait_until(valid_beat, timeout=20, message="a valid heartbeat")
    finally:
        client.close()
        consumer.close()
    doc = next(d for d in docs if d["status"] == "valid")
    assert doc["service"] == "svc"
    assert doc["topic"] == log
    assert set(doc["offsets"]) == {"0", "1"}


def test_heartbeat_says_the_kind_of_the_last_error_never_its_text(clock: FakeClock) -> None:
    source = InMemorySource()
    client = Revocast(settings(), clock=clock, source=source)
    producer = FakeProducer()
    beat = Heartbeat(client.settings, client, clock=clock, producer_factory=lambda _: producer)
    try:
        source.set_ready()
        assert beat.beat()
        client.status_provider.update(
            DataSourceState.INTERRUPTED,
            "Kafka: KafkaConnectionError: SASL failed for 'svc-billing' at kafka-3:9094",
            kind=SourceErrorKind.KAFKA_ERROR,
        )
        assert beat.beat()
    finally:
        client.close()
    first, second = (json.loads(value) for _, _, value in producer.sent[:2])
    assert first["error_kind"] is None
    assert second["error_kind"] == "kafka_error"
    assert b"svc-billing" not in producer.sent[1][2]


class _SlowClosingSource(InMemorySource):
    """A source whose close() takes its whole budget unless the OFF heartbeat went out."""

    def __init__(self, off_sent: threading.Event) -> None:
        super().__init__()
        self._off_sent = off_sent
        self.off_sent_before_close_returned: bool | None = None

    def close(self, timeout: float) -> None:
        self.off_sent_before_close_returned = self._off_sent.wait(timeout)
        super().close(timeout)


def test_the_off_heartbeat_goes_out_while_the_source_closes_not_after_it(
    clock: FakeClock,
) -> None:
    off_sent = threading.Event()

    class Producer(FakeProducer):
        def send(self, topic: str, *, key: bytes, value: bytes) -> Acked:
            result = super().send(topic, key=key, value=value)
            if json.loads(value)["status"] == "off":
                off_sent.set()
            return result

    producer = Producer()
    source = _SlowClosingSource(off_sent)
    client = Revocast(settings(heartbeat_interval=30), clock=clock, source=source)
    source.set_ready()
    beat = Heartbeat(client.settings, client, clock=clock, producer_factory=lambda _: producer)
    client._heartbeat = beat  # as the client makes one for a Kafka source
    beat.start()
    wait_until(lambda: len(producer.sent) == 1, timeout=5, message="first heartbeat")
    client.close(timeout=2)
    assert source.off_sent_before_close_returned is True
    assert [json.loads(value)["status"] for _, _, value in producer.sent] == ["valid", "off"]
