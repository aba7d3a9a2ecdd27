"""The real worker seeding an empty rules table from a state topic it cannot read within
faust's ``broker_max_poll_interval``."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from revocation_events import Event, SubjectTokensRevoked, TokenRevoked
from streams._records import marker_record
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.streams._support import SIGNING_CODEC
from tests.streams._worker import Worker, delete_worker_topics, markers, worker_env
from tests.streams.test_snapshot_kafka import log_id
from tests.streams.test_worker_kafka import _read_to_end

pytestmark = pytest.mark.kafka

_MAX_POLL_INTERVAL_MS = 1_500
_STATE_RECORDS = 30_000
"""Merging them alone outlasts the interval (each is a changelog write: 5-18 k a second
here)."""
_TOMBSTONES = 60_000
"""Read and skipped, never merged: with the rule records, reading alone outlasts the
interval too (25-35 us a record here). 100,000 rule records did both as well, but their
merge took most of the test's 35 s. (On this box neither size makes the worker leave its
group with streams._keepalive disabled: see the report of 2026-12-04.)"""


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=50, batch_size=1024 * 1024, acks="all"
    )
    try:
        yield producer
    finally:
        producer.close(timeout=10)


def _send(producer: KafkaProducer, topic: str, event: Event, *, state: bool = False) -> None:
    encoded = SIGNING_CODEC.encode(event)
    key = f"{encoded.key.decode()}#{event.id}".encode() if state else encoded.key
    producer.send(topic, key=key, value=encoded.value, headers=list(encoded.headers), partition=0)


def test_a_seed_longer_than_the_max_poll_interval_finishes_and_the_worker_goes_on(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer, tmp_path: Path
) -> None:
    """A worker with a new app id seeds its empty table from a state topic it cannot read
    and merge within ``max_poll_interval_ms``. aiokafka took the seeding worker for a stuck
    consumer (faust fetches nothing meanwhile) and left the group mid-seed; at the next
    assignment the seed started over from the state topic's start, so it never finished and
    the worker never wrote another marker."""
    log_topic = make_topic(partitions=1)
    state_topic = f"{log_topic}.state"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics(
            [NewTopic(state_topic, 1, 1, topic_configs={"cleanup.policy": "compact"})]
        )
    finally:
        admin.close()
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    _send(producer, log_topic, TokenRevoked(issuer="t", jti="first", expires_at=later))
    # What a worker of another app id left: its rules (a watermark among them), and a marker
    # past the log's first record.
    strong = SubjectTokensRevoked(issuer="t", sub="u", issued_before=now, expires_at=later)
    _send(producer, state_topic, strong, state=True)
    for n in range(_STATE_RECORDS):
        _send(
            producer,
            state_topic,
            TokenRevoked(issuer="t", jti=f"j{n}", expires_at=later),
            state=True,
        )
    for n in range(_TOMBSTONES):
        # Expired rules of that other worker, not compacted away yet.
        producer.send(state_topic, key=f"jti:gone{n}#{n}".encode(), value=None, partition=0)
    marker = marker_record(log_topic, 0, 0, topic_id=log_id(kafka_bootstrap, log_topic))
    producer.send(state_topic, key=marker.key, value=marker.value, partition=0)
    producer.flush(timeout=30)

    env = worker_env(kafka_bootstrap, log_topic, tmp_path / "data")
    env["REVOCAST_KAFKA_OPTIONS"] = json.dumps({"max_poll_interval_ms": _MAX_POLL_INTERVAL_MS})
    worker = Worker(env, tmp_path / "worker.log")
    try:
        worker.start()
        started = time.monotonic()
        wait_until(
            lambda: (
                "rules table seeded from the state topic" in worker.output()
                or worker.output().count("seeding it with") > 1
                or not worker.alive()
            ),
            timeout=40,
            message="the seed to finish",
        )
        took = time.monotonic() - started
        output = worker.output()
        assert output.count("seeding it with") == 1, output[-3000:]
        assert took > _MAX_POLL_INTERVAL_MS / 1000, f"the seed took only {took:.1f}s"
        # The seeded table judges the log's next event: a weaker watermark changes nothing.
        weaker = SubjectTokensRevoked(
            issuer="t", sub="u", issued_before=now - timedelta(hours=1), expires_at=later
        )
        _send(producer, log_topic, weaker)
        producer.flush(timeout=30)
        wait_until(
            lambda: markers(kafka_bootstrap, log_topic).get(0, -1) >= 1,
            timeout=20,
            message="a marker past the record published after the seed",
        )
        keys = {record.key for record in _read_to_end(kafka_bootstrap, state_topic)}
        assert SIGNING_CODEC.encode(weaker).key + f"#{weaker.id}".encode() not in keys
        output = worker.output()
        assert output.count("seeding it with") == 1, output[-3000:]
        assert "LeaveGroup" not in output, output[-3000:]
    finally:
        worker.ensure_dead()
        delete_worker_topics(kafka_bootstrap, log_topic)
