"""Helpers for the producer tests: keys, settings and reading a topic back."""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer, TopicPartition

from revocation_events import EventCodec, EventVerifier, SigningKey

__all__ = ["UNREACHABLE", "new_signing_key", "read_records", "verifying_codec"]

UNREACHABLE = "127.0.0.1:1"
"""A bootstrap address nothing listens on: connections are refused at once."""


def new_signing_key(kid: str = "test-key") -> SigningKey:
    return SigningKey.ed25519(kid, Ed25519PrivateKey.generate())


def verifying_codec(key: SigningKey) -> EventCodec:
    return EventCodec(verifier=EventVerifier([key.verification_key()]))


def read_records(bootstrap: str, topic: str, count: int, *, timeout: float = 60.0) -> list[Any]:
    """Every record of every partition from the beginning, until ``count`` arrived.

    Records come grouped by partition, each partition in offset order.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        by_partition: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while sum(len(v) for v in by_partition.values()) < count:
            if time.monotonic() > deadline:
                got = sum(len(v) for v in by_partition.values())
                raise AssertionError(f"read {got} of {count} records from {topic}")
            for tp, records in consumer.poll(timeout_ms=200).items():
                by_partition[tp.partition].extend(records)
        # Nothing beyond ``count`` may be there either (no duplicate, no stray record).
        end = consumer.end_offsets(tps, timeout_ms=10_000)
        assert sum(end.values()) == count, f"{sum(end.values())} records in {topic}, not {count}"
    finally:
        consumer.close()
    return [r for p in sorted(by_partition) for r in by_partition[p]]
