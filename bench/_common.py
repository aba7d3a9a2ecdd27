"""Pieces shared by the benchmarks: keys, timing, percentiles, state filling, a broker, topics."""

from __future__ import annotations

import contextlib
import os
import statistics
import timeit
import uuid
import warnings
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

from consumer_sdk import ConsumerSettings, RevocationState
from revocation_events import KafkaSettings, SigningKey, TokenRevoked

__all__ = [
    "EVENT_KEY",
    "SECRET",
    "create_topic",
    "delete_topic",
    "fill",
    "kafka_broker",
    "median_us",
    "percentile",
    "settings",
    "temp_topic",
]

SECRET = b"k" * 32
EVENT_KEY = SigningKey.hmac("bench", b"e" * 32)


def median_us(fn: Callable[[], object], number: int, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean time of one call, in microseconds."""
    runs = timeit.repeat(fn, number=number, repeat=repeat)
    return statistics.median(runs) / number * 1e6


def percentile(samples: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def fill(state: RevocationState, n: int, start: int = 0) -> None:
    """Revoke ``n`` distinct jtis (``jti-<i>``) valid for an hour."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    now = datetime.now(UTC)
    for i in range(start, start + n):
        # model_construct: the benchmark measures the state, not pydantic validation.
        state.apply(
            TokenRevoked.model_construct(
                issuer="bench",
                jti=f"jti-{i:09d}",
                expires_at=expires,
                occurred_at=now,
                id=uuid.UUID(int=i),
            )
        )


def settings(**overrides: Any) -> ConsumerSettings:
    """SDK settings for HS256 tokens signed with :data:`SECRET` and events with EVENT_KEY."""
    values: dict[str, Any] = {
        "algorithms": ("HS256",),
        "jwt_keys": {"k1": SECRET},
        "event_keys": (EVENT_KEY.verification_key(),),
        # Heartbeats are operator telemetry, not part of what is measured.
        "heartbeat_interval": 0.0,
    }
    values.update(overrides)
    return ConsumerSettings(**values)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """``$KAFKA_BOOTSTRAP_SERVERS`` if set, else a :class:`LocalKafkaBroker` for the block."""
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        yield existing
        return
    from revocast.localkafka import LocalKafkaBroker

    with LocalKafkaBroker(heap="768m") as broker:
        yield broker.bootstrap_servers


def create_topic(bootstrap: str, topic: str, partitions: int = 3) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=30_000)
    finally:
        admin.close()


def delete_topic(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics([topic], timeout_ms=30_000)
    finally:
        admin.close()


@contextlib.contextmanager
def temp_topic(bootstrap: str, prefix: str, partitions: int = 3) -> Iterator[KafkaSettings]:
    """A fresh topic for the block, deleted afterwards."""
    topic = f"{prefix}-{uuid.uuid4().hex[:10]}"
    create_topic(bootstrap, topic, partitions)
    try:
        yield KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    finally:
        with contextlib.suppress(Exception):
            delete_topic(bootstrap, topic)
