"""What the ``revocast status`` CLI tests share: an SDK service in its own process, and the
environment the command reads."""

from __future__ import annotations

from multiprocessing.connection import Connection

import pytest

from consumer_sdk import Revocast
from revocation_events import KafkaSettings
from tests._kafka_fixtures import MakeTopic
from tests.consumer_sdk._helpers import settings


def sdk_service(bootstrap: str, topic: str, beats: str, service: str, stop: Connection) -> None:
    """A service embedding the SDK with fast heartbeats, until told to stop (or killed)."""
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
    rc = Revocast(
        settings(kafka=kafka, service_name=service, heartbeat_interval=0.2, heartbeat_topic=beats)
    )
    try:
        stop.poll(60)
    finally:
        rc.close()


def status_env(
    bootstrap: str, make_topic: MakeTopic, monkeypatch: pytest.MonkeyPatch, partitions: int
) -> str:
    """A fresh log of ``partitions`` and heartbeat topic in the environment; the log's name."""
    log = make_topic(partitions=partitions)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", log)
    monkeypatch.setenv("REVOCAST_HEARTBEAT_TOPIC", make_topic(partitions=1))
    monkeypatch.setenv("REVOCAST_MAX_TOKEN_LIFETIME", "3600")
    return log
