"""Each :class:`SourceErrorKind` is recorded by the code that meets the failure, through the
sink, into ``Revocast.status``: never read back from the error's text. Kafka failures are
injected into a real :class:`KafkaSource` (a fake consumer, or a constructor that fails)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    SaslAuthenticationFailedError,
    TopicAuthorizationFailedError,
)

import consumer_sdk._kafka_source as kafka_source
from consumer_sdk import DataSourceState, Revocast, SourceErrorKind, SourceStatus
from consumer_sdk._kafka_source import KafkaSource
from consumer_sdk._stall import StallWatch
from consumer_sdk.testing import InMemorySource
from revocation_events import KafkaSettings
from tests._kafka_fixtures import wait_until
from tests.consumer_sdk._helpers import FakeClock, settings

KAFKA = KafkaSettings(bootstrap_servers=("127.0.0.1:1",), topic="revocations")


class _Consumer:
    """A consumer of the topic ``revocations`` with ``partitions``; ``end_offsets`` raises
    ``fail`` when given."""

    def __init__(self, partitions: set[int], fail: Exception | None = None) -> None:
        self.partitions = partitions
        self.fail = fail

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.partitions

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        if self.fail is not None:
            raise self.fail
        return dict.fromkeys(tps, 0)

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    def close(self, timeout_ms: int) -> None:
        pass


@pytest.fixture
def run_kafka_source() -> Iterator[Callable[[Callable[[], Any] | None], SourceStatus]]:
    """Start a Revocast on a Kafka source whose ``_connect`` is replaced (None: the real one)
    and return its status once the first failure is recorded."""
    clients: list[Revocast] = []

    def run(connect: Callable[[], Any] | None) -> SourceStatus:
        config = settings(kafka=KAFKA, replay_from_beginning=True)
        source = KafkaSource(config)
        source._retention = {}  # no admin client: there is no broker
        if connect is not None:
            source._connect = connect  # type: ignore[method-assign]
        rc = Revocast(config, source=source)
        clients.append(rc)
        wait_until(lambda: rc.status.last_error is not None, timeout=10, message="a failure")
        return rc.status

    yield run
    for rc in clients:
        rc.close()


def test_a_kafka_client_that_cannot_be_created_is_kafka_unreachable(
    monkeypatch: pytest.MonkeyPatch,
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    def no_broker(*args: Any) -> Any:
        raise KafkaConnectionError("kafka-3.corp.internal:9094")

    monkeypatch.setattr(kafka_source, "closing_on_failure", no_broker)
    status = run_kafka_source(None)
    assert status.error_kind is SourceErrorKind.KAFKA_UNREACHABLE
    assert status.state is DataSourceState.INITIALIZING  # never valid: still fail-closed
    assert "kafka-3.corp.internal:9094" in (status.last_error or "")  # the text is kept


def test_a_failed_kafka_request_is_kafka_error(
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    consumer = _Consumer({0}, fail=KafkaTimeoutError("end offsets"))
    assert run_kafka_source(lambda: consumer).error_kind is SourceErrorKind.KAFKA_ERROR


def test_a_topic_without_partitions_is_topic_missing(
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    consumer = _Consumer(set())
    assert run_kafka_source(lambda: consumer).error_kind is SourceErrorKind.TOPIC_MISSING


def test_any_other_failure_of_the_kafka_source_is_a_source_error(
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    consumer = _Consumer({0}, fail=ValueError("a bug, not Kafka"))
    status = run_kafka_source(lambda: consumer)
    assert status.error_kind is SourceErrorKind.SOURCE_ERROR
    assert status.last_error == "ValueError: a bug, not Kafka"


def test_a_stalled_sync_thread_is_sync_stalled_until_it_moves_again() -> None:
    mono = FakeClock(start=0.0)
    source = InMemorySource()
    with Revocast(settings(), source=source) as rc:
        source.set_ready()
        watch = StallWatch(rc._sink, after=5.0, stop=threading.Event(), monotonic=mono)
        watch.beat()
        mono.advance(6)
        assert watch.check()
        assert rc.status.state is DataSourceState.INTERRUPTED
        assert rc.status.error_kind is SourceErrorKind.SYNC_STALLED
        watch.beat()
        moved = rc.status
        assert (moved.state, moved.error_kind) == (DataSourceState.VALID, None)


def test_a_forked_child_serving_its_inherited_state_is_forked() -> None:
    source = InMemorySource()
    with Revocast(settings(), source=source) as rc:
        source.set_ready()
        rc._after_fork_in_child()  # what the os.register_at_fork hook runs in the child
        assert rc.status.state is DataSourceState.INTERRUPTED
        assert rc.status.error_kind is SourceErrorKind.FORKED


def test_an_error_a_source_reports_without_a_kind_is_a_source_error() -> None:
    # A third-party source may pass only the text.
    source = InMemorySource()
    with Revocast(settings(), source=source) as rc:
        source.set_ready()
        rc._sink.status(DataSourceState.INTERRUPTED, "cannot connect to Kafka: text not read")
        assert rc.status.error_kind is SourceErrorKind.SOURCE_ERROR


def test_the_in_memory_source_reports_the_kind_a_test_asks_for() -> None:
    source = InMemorySource()
    with Revocast(settings(), source=source) as rc:
        source.set_ready()
        source.interrupt("denied", kind=SourceErrorKind.KAFKA_UNAUTHORIZED)
        assert (rc.status.last_error, rc.status.error_kind) == (
            "denied",
            SourceErrorKind.KAFKA_UNAUTHORIZED,
        )
        source.interrupt()
        assert rc.status.error_kind is SourceErrorKind.SOURCE_ERROR


class _Cluster:
    def __init__(self, unauthorized: set[str]) -> None:
        self.unauthorized_topics = unauthorized


def test_a_topic_the_acls_hide_is_kafka_unauthorized_not_topic_missing(
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    # Kafka answers TOPIC_AUTHORIZATION_FAILED in place of the partitions; kafka-python
    # returns no partitions and remembers the topic in its cluster metadata.
    consumer = _Consumer(set())
    consumer._cluster = _Cluster({"revocations"})  # type: ignore[attr-defined]
    status = run_kafka_source(lambda: consumer)
    assert status.error_kind is SourceErrorKind.KAFKA_UNAUTHORIZED
    assert "not authorized" in (status.last_error or "")


@pytest.mark.parametrize(
    "refusal",
    [
        TopicAuthorizationFailedError({"revocations"}),
        SaslAuthenticationFailedError("bad password for svc-billing"),
    ],
    ids=["acl", "sasl"],
)
def test_a_refused_kafka_request_is_kafka_unauthorized(
    refusal: Exception, run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus]
) -> None:
    consumer = _Consumer({0}, fail=refusal)
    assert run_kafka_source(lambda: consumer).error_kind is SourceErrorKind.KAFKA_UNAUTHORIZED


def test_a_client_refused_at_connection_is_kafka_unauthorized(
    monkeypatch: pytest.MonkeyPatch,
    run_kafka_source: Callable[[Callable[[], Any] | None], SourceStatus],
) -> None:
    def refused(*args: Any) -> Any:
        raise SaslAuthenticationFailedError("bad password for svc-billing")

    monkeypatch.setattr(kafka_source, "closing_on_failure", refused)
    assert run_kafka_source(None).error_kind is SourceErrorKind.KAFKA_UNAUTHORIZED
