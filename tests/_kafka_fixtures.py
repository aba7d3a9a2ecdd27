"""Pytest plugin: real Kafka brokers for integration tests.

Fixtures:

* ``kafka_bootstrap`` (session): ``"host:port"`` of a shared broker, taken from
  the first source that is available:

  1. ``$KAFKA_BOOTSTRAP_SERVERS`` (an existing broker, e.g. in CI);
  2. a testcontainers ``KafkaContainer`` in KRaft mode, when a Docker engine answers;
  3. a :class:`~revocast.localkafka.LocalKafkaBroker` (Java 17 + Maven, no Docker).

* ``make_topic`` (function): ``make_topic(partitions=3, **configs) -> name`` creates
  a uniquely named topic on ``kafka_bootstrap`` and waits until every partition has
  a leader. Config names take underscores for dots (``cleanup_policy="compact"``).
  The topics are deleted after the test.

* ``private_broker`` (function): a started ``LocalKafkaBroker`` of the test's own,
  for fault tests that kill and restart it. Always the local Maven broker, even
  when ``$KAFKA_BOOTSTRAP_SERVERS`` is set: a shared broker cannot be killed.

Broker JVMs started here die with the test process (``PR_SET_PDEATHSIG``); the
finalizers also assert that each JVM is gone after ``stop()``.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    # kafka-python 3.0.12 calls the deprecated importlib.resources.read_text while
    # importing; with filterwarnings=error that import would fail the session.
    warnings.filterwarnings("ignore", r"(read|open)_text is deprecated", DeprecationWarning)
    import kafka
    import kafka.admin  # noqa: F401

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from revocast.localkafka import LocalKafkaBroker

__all__ = [
    "MakeTopic",
    "create_topic",
    "kafka_bootstrap",
    "make_topic",
    "pid_alive",
    "private_broker",
    "produce",
    "read_values",
    "wait_until",
]


class MakeTopic(Protocol):
    """The ``make_topic`` fixture's callable."""

    def __call__(self, partitions: int = 3, **configs: str | int) -> str: ...


# -- helpers usable from any test -------------------------------------------


_POLL_PAUSE = threading.Event()
"""Never set: its ``wait`` is the pause between two polls."""


def wait_until(condition: Callable[[], bool], *, timeout: float, message: str) -> None:
    """Poll ``condition`` every 50 ms until true; fail the test with ``message`` once the
    deadline ``timeout`` s away has passed."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s: {message}")
        _POLL_PAUSE.wait(0.05)


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (dead, not yet reaped by init) counts as dead."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] not in {"Z", "X"}


def create_topic(
    bootstrap: str,
    *,
    partitions: int = 3,
    configs: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> str:
    """Create a uniquely named topic and wait until all its partitions have leaders."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics(
            [NewTopic(name, partitions, 1, topic_configs=dict(configs or {}))],
            timeout_ms=int(timeout * 1000),
        )

        def all_led() -> bool:
            (topic,) = admin.describe_topics([name])
            led = [p for p in topic["partitions"] if p["error_code"] == 0 and p["leader_id"] >= 0]
            return topic["error_code"] == 0 and len(led) == partitions

        wait_until(all_led, timeout=timeout, message=f"leaders for all partitions of {name}")
    finally:
        admin.close()
    return name


def produce(
    bootstrap: str, topic: str, *values: bytes, key: bytes | None = None, partition: int = 0
) -> None:
    """Send ``values`` to one partition with ``acks=all`` and wait for every ack."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        for value in values:
            producer.send(topic, key=key, value=value, partition=partition).get(timeout=30)
    finally:
        producer.close(timeout=10)


def read_values(
    bootstrap: str, topic: str, count: int, *, partition: int = 0, timeout: float = 30.0
) -> list[bytes]:
    """Read the first ``count`` values of a partition from its beginning."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    values: list[bytes] = []
    try:
        consumer.assign([TopicPartition(topic, partition)])
        consumer.seek_to_beginning()

        def got_all() -> bool:
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(record.value for record in records)
            return len(values) >= count

        wait_until(got_all, timeout=timeout, message=f"{count} records from {topic}")
    finally:
        consumer.close()
    return values


# -- broker sources -----------------------------------------------------------


def _docker_engine_answers(timeout: float = 1.0) -> bool:
    """Ping the Docker engine's ``/_ping`` endpoint; False quickly when there is none."""
    url = urlparse(os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"))
    try:
        if url.scheme == "unix":
            if not Path(url.path).exists():
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(url.path)
        elif url.scheme == "tcp" and url.hostname and url.port:
            sock = socket.create_connection((url.hostname, url.port), timeout=timeout)
        else:
            return False
        with sock:
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
        return reply.startswith(b"HTTP/1.") and b" 200 " in reply
    except OSError:
        return False


@contextmanager
def _testcontainers_kafka() -> Iterator[str]:
    from testcontainers.community.kafka import KafkaContainer

    with KafkaContainer().with_kraft() as container:
        yield str(container.get_bootstrap_server())


@contextmanager
def _local_broker() -> Iterator[LocalKafkaBroker]:
    broker = LocalKafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        pid = broker.pid
        broker.stop()
        assert pid is not None
        assert not pid_alive(pid), f"broker JVM {pid} outlived stop()"


# -- fixtures -----------------------------------------------------------------


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of the session's shared broker (env, then Docker, then local JVM)."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
    elif _docker_engine_answers():
        with _testcontainers_kafka() as bootstrap:
            yield bootstrap
    else:
        with _local_broker() as broker:
            yield broker.bootstrap_servers


@pytest.fixture
def make_topic(kafka_bootstrap: str) -> Iterator[MakeTopic]:
    """Factory for fresh topics on the session broker; deleted after the test."""
    created: list[str] = []

    def make(partitions: int = 3, **configs: str | int) -> str:
        dotted = {key.replace("_", "."): str(value) for key, value in configs.items()}
        name = create_topic(kafka_bootstrap, partitions=partitions, configs=dotted)
        created.append(name)
        return name

    yield make
    if created:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
        try:
            admin.delete_topics(created, timeout_ms=30_000)
        finally:
            admin.close()


@pytest.fixture
def private_broker() -> Iterator[LocalKafkaBroker]:
    """A started local broker owned by one test, free to be killed and restarted."""
    with _local_broker() as broker:
        yield broker
