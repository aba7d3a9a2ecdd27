"""How many replicas the worker's topics get: unset (auto), min(3, brokers) as the log topic,
with ``min.insync.replicas`` 2 from 3 replicas; decided once, at start-up, and logged."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest
from kafka import KafkaAdminClient

import streams._topics
from revocation_events import KafkaSettings
from streams import StreamsSettings
from streams._topics import (
    cluster_replication,
    prepare_topics,
    replication_config,
    resolve_replication,
    state_topic_config,
)


def _settings(replication_factor: int | None = None) -> StreamsSettings:
    return StreamsSettings(
        kafka=KafkaSettings(topic="rev"),
        allow_unsigned=True,
        replication_factor=replication_factor,
    )


class _Cluster:
    """What the worker's start-up asks of a ``KafkaAdminClient``, for a cluster of
    ``brokers`` brokers holding only the log topic; records the topics it is asked to
    create."""

    DEFAULT_CONFIG = KafkaAdminClient.DEFAULT_CONFIG

    def __init__(self, brokers: int, log_partitions: int = 2) -> None:
        self.brokers = brokers
        self.described_cluster = 0
        self.topics = {"rev": log_partitions}
        self.created: dict[str, dict[str, Any]] = {}

    def __call__(self, **config: Any) -> _Cluster:  # stands in for the client's class
        return self

    def describe_cluster(self) -> dict[str, Any]:
        self.described_cluster += 1
        return {"brokers": [{"broker_id": i} for i in range(self.brokers)]}

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {"topic": n, "error_code": 0, "partitions": [{}] * self.topics[n]}
            if n in self.topics
            else {"topic": n, "error_code": 3, "partitions": []}
            for n in names
        ]

    def create_topics(self, specs: dict[str, dict[str, Any]], **_: Any) -> dict[str, Any]:
        self.created.update(specs)
        return {"topics": [{"name": name, "error_code": 0} for name in specs]}

    def wait_for_topics(self, names: list[str], **_: Any) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("brokers", "factor", "min_insync"), [(1, 1, 1), (3, 3, 2), (5, 3, 2)])
def test_auto_replication_is_the_log_topics_default_for_the_broker_count(
    brokers: int, factor: int, min_insync: int
) -> None:
    resolved = resolve_replication(_settings(), brokers)
    assert resolved.replication_factor == factor
    assert replication_config(resolved) == {"min.insync.replicas": str(min_insync)}
    assert state_topic_config(resolved)["min.insync.replicas"] == str(min_insync)


def test_an_explicit_replication_factor_is_kept_whatever_the_broker_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster = _Cluster(brokers=5)
    with caplog.at_level(logging.INFO, "streams"):
        resolved = cluster_replication(cluster, _settings(2))
    assert resolved.replication_factor == 2
    assert replication_config(resolved) == {"min.insync.replicas": "1"}
    assert cluster.described_cluster == 0, "the cluster need not be asked"
    assert "replication factor 2 (REVOCAST_STREAMS_REPLICATION_FACTOR)" in caplog.text


@pytest.mark.parametrize(("brokers", "factor", "min_insync"), [(1, 1, "1"), (5, 3, "2")])
def test_every_topic_the_worker_creates_gets_the_resolved_replication(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    brokers: int,
    factor: int,
    min_insync: str,
) -> None:
    """On a 5-broker cluster with the variable unset, every topic used to get 1 replica and
    no min.insync.replicas: one broker lost took state partitions offline."""
    cluster = _Cluster(brokers)
    monkeypatch.setattr(streams._topics, "KafkaAdminClient", cluster)
    with caplog.at_level(logging.INFO, "streams"):
        resolved, partitions = prepare_topics(_settings())
    assert (resolved.replication_factor, partitions) == (factor, 2)
    assert cluster.described_cluster == 1
    assert set(cluster.created) == {
        "rev.state",
        "rev.stats",
        "rev.alerts",
        "revocast-streams-ticks",
        "revocast-streams-rules-changelog",
        "revocast-streams-windows-changelog",
    }
    for name, spec in cluster.created.items():
        assert spec["replication_factor"] == factor, name
        assert spec["configs"]["min.insync.replicas"] == min_insync, name
    assert (
        f"replication factor {factor} (auto, {brokers} broker(s)) and "
        f"min.insync.replicas {min_insync}"
    ) in caplog.text


class _StuckState:
    """A consumer whose state partitions hold records that never arrive, on a fake clock that
    moves 1 s per poll."""

    DEFAULT_CONFIG: dict[str, Any] = {}

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock

    def __call__(self, **config: Any) -> _StuckState:  # stands in for the client's class
        return self

    def beginning_offsets(self, tps: list[Any], timeout_ms: int = 0) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    def end_offsets(self, tps: list[Any], timeout_ms: int = 0) -> dict[Any, int]:
        return dict.fromkeys(tps, 10)

    def assign(self, tps: list[Any]) -> None:
        pass

    def seek(self, tp: Any, offset: int) -> None:
        pass

    def position(self, tp: Any, timeout_ms: int = 0) -> int:
        return 0

    def poll(self, timeout_ms: int, max_records: int = 0) -> dict[Any, list[Any]]:
        self.clock[0] += 1.0
        return {}

    def close(self) -> None:
        pass


def test_finding_the_last_markers_past_the_timeout_is_a_streams_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The worker retries it, then holds the partitions (``streams.app``)."""
    clock = [0.0]
    monkeypatch.setattr(streams._topics, "KafkaConsumer", _StuckState(clock))
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with pytest.raises(streams._topics.StreamsError, match="timed out"):
        streams._topics.resume_offsets(_settings(), [0, 1], timeout=5)
    assert 5 < clock[0] <= 7
