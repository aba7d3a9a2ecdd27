"""kafka-python workarounds: a consumer driving its own network I/O, against the broker."""

from __future__ import annotations

import threading
import uuid
from types import SimpleNamespace

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from revocation_events import drive_io_inline
from tests._kafka_fixtures import MakeTopic


def _io_threads(client_id: str) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == f"kafka-io-{client_id}"]


@pytest.mark.kafka
def test_a_consumer_without_its_io_thread_still_fetches_lists_offsets_and_closes(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic(partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    for i in range(10):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 2)
    producer.flush(30)
    producer.close(timeout=10)
    client_id = f"inline-{uuid.uuid4().hex[:8]}"
    consumer = KafkaConsumer(bootstrap_servers=kafka_bootstrap, client_id=client_id, group_id=None)
    try:
        assert _io_threads(client_id)  # kafka-python 3.0 starts one per consumer
        assert drive_io_inline(consumer) is True
        assert _io_threads(client_id) == []
        tps = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        assert consumer.end_offsets(tps, timeout_ms=10_000) == {tps[0]: 5, tps[1]: 5}
        values: list[bytes] = []
        for _ in range(50):
            for records in consumer.poll(timeout_ms=200).values():
                values.extend(r.value for r in records)
            if len(values) == 10:
                break
        assert sorted(values) == sorted(f"v{i}".encode() for i in range(10))
        assert _io_threads(client_id) == []  # no call restarted it
    finally:
        consumer.close(timeout_ms=5000)


def test_a_client_without_kafka_python_3_internals_is_left_alone() -> None:
    assert drive_io_inline(object()) is False
    assert drive_io_inline(SimpleNamespace(_net=SimpleNamespace(stop=None))) is False
