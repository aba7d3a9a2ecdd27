"""End to end against a real broker: a pushed SET comes out of Kafka as the signed event."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition
from starlette.testclient import TestClient

from producer import Publisher, PublisherSettings
from receiver import Receiver, ReceiverSettings, TransmitterSettings, create_app
from revocation_events import (
    EventCodec,
    EventVerifier,
    KafkaSettings,
    SigningKey,
    SubjectBlocked,
)
from tests._kafka_fixtures import MakeTopic
from tests.receiver._support import AUDIENCE, PUSH_TOKEN, RISC, TRANSMITTER, FakeClock, Transmitter
from tests.receiver.conftest import Push

pytestmark = pytest.mark.kafka


def test_pushed_set_is_published_to_kafka_as_a_signed_revocation(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = make_topic(partitions=3)
    key = SigningKey.hmac("bridge-1", b"k" * 32)
    transmitter = Transmitter(FakeClock(datetime.now(UTC)))
    publisher_settings = PublisherSettings(
        issuer="ssf-bridge",
        kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=topic),
        signing_key=key,
        delivery="direct",
        outbox_path=tmp_path / "outbox.sqlite3",
    )
    settings = ReceiverSettings(
        transmitter=TransmitterSettings(
            issuer=TRANSMITTER, audience=(AUDIENCE,), push_tokens=(PUSH_TOKEN,)
        ),
        dedupe_path=tmp_path / "dedupe.sqlite3",
    )
    sub_id = {"format": "opaque", "id": "kafka-user-1"}

    with (
        Publisher(publisher_settings) as publisher,
        transmitter.client() as http,
        Receiver(
            settings=settings,
            sink=publisher,
            max_token_lifetime=timedelta(hours=1),
            http_client=http,
        ) as receiver,
        TestClient(create_app(receiver)) as client,
    ):
        response = Push(client)(transmitter.set(f"{RISC}account-disabled", {}, sub_id=sub_id))

    assert response.status_code == 202
    (record_value, headers) = _read_one(kafka_bootstrap, topic)
    event = EventCodec(verifier=EventVerifier([key.verification_key()])).decode(
        record_value, headers
    )
    assert isinstance(event, SubjectBlocked)
    assert event.sub == "kafka-user-1"
    assert event.reason == "risc:account-disabled"


def _read_one(
    bootstrap: str, topic: str, timeout: float = 30.0
) -> tuple[bytes, list[tuple[str, bytes]]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(3)])
        consumer.seek_to_beginning()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    return record.value, list(record.headers)
        pytest.fail(f"no record on {topic} within {timeout}s")
    finally:
        consumer.close()
