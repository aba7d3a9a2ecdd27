"""The worker's topics against the session's single broker: created under auto replication
with 1 replica and ``min.insync.replicas=1`` set on the topic itself; where it resumes."""

from __future__ import annotations

import logging
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource

from revocation_events import KafkaSettings
from streams import StreamsSettings
from streams._records import marker_record
from streams._topics import Resume, prepare_topics, resume_offsets
from tests._kafka_fixtures import MakeTopic
from tests.streams._worker import app_id, delete_worker_topics


@pytest.mark.kafka
def test_the_state_topic_created_under_auto_replication_has_one_replica_and_min_insync_one(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    log_topic = make_topic(partitions=2)
    settings = StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log_topic),
        app_id=app_id(log_topic),
        allow_unsigned=True,
    )
    assert settings.replication_factor is None
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        assert len(admin.describe_cluster()["brokers"]) == 1, "needs a single-broker cluster"
        resolved, partitions = prepare_topics(settings)
        (meta,) = admin.describe_topics([settings.state_topic])
        # Only settings made on the topic itself, not the broker's defaults.
        described = admin.describe_configs(
            [ConfigResource("TOPIC", settings.state_topic, ["min.insync.replicas"])]
        )
    finally:
        admin.close()
        delete_worker_topics(kafka_bootstrap, log_topic)
    assert (resolved.replication_factor, partitions) == (1, 2)
    assert {len(p["replica_nodes"]) for p in meta["partitions"]} == {1}
    entry = described["topic"][settings.state_topic]["min.insync.replicas"]
    assert (entry["value"], entry["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG")


@pytest.mark.kafka
def test_the_worker_resumes_after_each_partitions_last_marker_whatever_log_id_it_names(
    kafka_bootstrap: str, make_topic: MakeTopic, caplog: pytest.LogCaptureFixture
) -> None:
    """Lenient where SDKs are not: a marker naming no id (written before markers did) or
    another one still says where the worker resumes; seeding judges the incarnation. A marker
    SDKs pass over (a ``topic_id`` that is not a UUID) is passed over here too."""
    log = make_topic(partitions=3)
    settings = StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log),
        app_id=app_id(log),
        allow_unsigned=True,
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        settings, _ = prepare_topics(settings)
        for p in range(3):
            for i in range(10):
                producer.send(log, key=b"k", value=b"v%d" % i, partition=p)
        other = uuid.UUID("11111111-1111-4111-8111-111111111111")
        bad = b'{"topic":"%s","partition":2,"offset":8,"topic_id":"not-a-uuid"}' % log.encode()
        for p, key, value in (
            (0, *_marker(log, 0, 3, None)),
            (1, *_marker(log, 1, 4, other)),
            (2, *_marker(log, 2, 5, other)),
            (2, b"__offsets__:2", bad),
        ):
            producer.send(settings.state_topic, key=key, value=value, partition=p)
        producer.flush(timeout=30)
        with caplog.at_level(logging.INFO, logger="streams"):
            resume = resume_offsets(settings, [0, 1, 2], timeout=60)
            worker_lines = caplog.text.count("resuming at")
            caplog.clear()
            # The snapshotter asks for the markers only: no "resuming at" lines of its own.
            assert resume_offsets(settings, [0, 1, 2], timeout=60, log_resume=False) == resume
            assert "resuming at" not in caplog.text
    finally:
        producer.close(timeout=10)
        delete_worker_topics(kafka_bootstrap, log)
    assert resume == {0: Resume(4, 3), 1: Resume(5, 4), 2: Resume(6, 5)}
    assert worker_lines == 3


def _marker(log: str, p: int, offset: int, named: uuid.UUID | None) -> tuple[bytes, bytes | None]:
    out = marker_record(log, p, offset, topic_id=named)
    return out.key, out.value
