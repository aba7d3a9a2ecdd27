from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaAdminClient

from producer import UnsafeTopicConfigError, ensure_topic, min_retention
from producer._topic import _ensure
from revocation_events import KafkaSettings
from tests._kafka_fixtures import MakeTopic
from tests.producer._support import UNREACHABLE

HOUR = 3600.0


def offline(topic: str = "t") -> KafkaSettings:
    return KafkaSettings(bootstrap_servers=(UNREACHABLE,), topic=topic)


@pytest.fixture
def fresh_topic(kafka_bootstrap: str) -> Iterator[KafkaSettings]:
    """Settings naming a topic that does not exist yet; deleted after the test."""
    name = f"ensure-{uuid.uuid4().hex[:12]}"
    yield KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=name)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        if name in admin.list_topics():
            admin.delete_topics([name])
    finally:
        admin.close()


def test_retention_shorter_than_twice_the_token_lifetime_is_refused_before_contacting_kafka() -> (
    None
):
    assert min_retention(HOUR) == 2 * HOUR
    with pytest.raises(UnsafeTopicConfigError, match="twice the max token lifetime"):
        ensure_topic(offline(), max_token_lifetime=HOUR, retention=2 * HOUR - 1)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_token_lifetime": float("nan")},
        {"max_token_lifetime": float("inf")},
        {"max_token_lifetime": HOUR, "retention": float("nan")},
        {"max_token_lifetime": HOUR, "retention": float("inf")},
        {"max_token_lifetime": HOUR, "timeout": float("nan")},
        {"max_token_lifetime": HOUR, "timeout": float("inf")},
    ],
)
def test_non_finite_seconds_are_refused_before_contacting_kafka(kwargs: dict[str, Any]) -> None:
    # They raised ValueError/OverflowError after connecting (NaN passed every range check).
    with pytest.raises(UnsafeTopicConfigError, match="finite number of seconds"):
        ensure_topic(offline(), **kwargs)


def test_min_insync_replicas_above_the_replication_factor_is_refused() -> None:
    with pytest.raises(UnsafeTopicConfigError, match=r"min\.insync\.replicas"):
        ensure_topic(
            offline(), max_token_lifetime=HOUR, replication_factor=1, min_insync_replicas=2
        )


@pytest.mark.kafka
def test_ensure_topic_creates_a_safe_topic_and_is_idempotent(
    fresh_topic: KafkaSettings,
) -> None:
    first = ensure_topic(fresh_topic, max_token_lifetime=HOUR, partitions=4, retention=2 * HOUR)
    assert first.created
    assert first.ok
    assert first.partitions == 4
    assert first.replication_factor == 1  # single-broker dev cluster
    assert first.configs["cleanup.policy"] == "delete"
    assert first.configs["retention.ms"] == str(int(2 * HOUR * 1000))
    assert first.configs["min.insync.replicas"] == "1"
    assert first.configs["unclean.leader.election.enable"] == "false"
    assert any("replication factor 1" in w for w in first.warnings)

    second = ensure_topic(fresh_topic, max_token_lifetime=HOUR, partitions=4, retention=2 * HOUR)
    assert not second.created
    assert second.ok
    assert (second.partitions, second.configs) == (first.partitions, first.configs)


@pytest.mark.kafka
def test_existing_unsafe_topic_is_reported_not_changed(
    make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    name = make_topic(partitions=2, retention_ms=60_000, cleanup_policy="compact")
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=name)
    report = ensure_topic(kafka, max_token_lifetime=HOUR, partitions=6)
    assert not report.created
    assert not report.ok
    text = "\n".join(report.problems)
    assert "retention.ms=60000" in text
    assert "compaction" in text
    assert "2 partitions, fewer than the 6" in text
    assert report.configs["retention.ms"] == "60000"  # untouched


@pytest.mark.kafka
def test_an_existing_topic_allowing_unclean_leader_election_is_reported(
    make_topic: MakeTopic, kafka_bootstrap: str
) -> None:
    # An out-of-sync replica elected leader truncates the acknowledged revocations it missed:
    # acks=all and min.insync.replicas then guarantee nothing.
    name = make_topic(partitions=6, unclean_leader_election_enable="true")
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=name)
    report = ensure_topic(kafka, max_token_lifetime=HOUR, partitions=6)
    assert not report.ok
    assert any("unclean.leader.election.enable=true" in p for p in report.problems)


class _ThreeBrokerAdmin:
    """An admin client double: a three-broker cluster holding ``topic`` with ``rf`` replicas."""

    def __init__(self, topic: str, rf: int) -> None:
        self.topic = topic
        self.rf = rf

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": n} for n in (1, 2, 3)]}

    def describe_topics(self, topics: list[str]) -> list[dict[str, Any]]:
        replicas = list(range(1, self.rf + 1))
        parts = [{"partition": p, "replica_nodes": replicas} for p in range(6)]
        return [{"topic": self.topic, "error_code": 0, "partitions": parts}]

    def describe_configs(self, resources: Any, config_filter: str) -> dict[str, Any]:
        values = {
            "retention.ms": str(int(7 * 24 * HOUR * 1000)),
            "retention.bytes": "-1",
            "cleanup.policy": "delete",
            "min.insync.replicas": "1",
        }
        return {"topic": {self.topic: {k: {"value": v} for k, v in values.items()}}}


def test_an_existing_single_replica_topic_on_a_three_broker_cluster_is_a_problem() -> None:
    # One broker loss then loses acknowledged revocations: not a development-only warning.
    report = _ensure(
        _ThreeBrokerAdmin("revocations", rf=1),
        "revocations",
        partitions=6,
        replication_factor=None,
        retention_ms=int(7 * 24 * HOUR * 1000),
        floor_ms=int(2 * HOUR * 1000),
        min_isr=None,
        timeout_ms=1000,
    )
    assert not report.ok
    assert any("replication factor 1" in p for p in report.problems)
