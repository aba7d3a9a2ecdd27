"""Publish throughput and ack latency against a real broker.

    KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:19092 python -m bench.producer.bench_publish [--quick]

Single: one call, one ack (what a logout request pays). Batch: ``publish_many``, one wait per
batch. Direct: straight to Kafka. Outbox: fsync'd SQLite commit, then the drainer's send.
Latencies are per call (per batch for batch rows).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaAdminClient

from bench._common import percentile as _percentile
from producer import DeliveryMode, Publisher, PublisherSettings, ensure_topic
from revocation_events import BaseEvent, KafkaSettings, SigningKey, TokenRevoked


def _run(
    label: str, publisher: Publisher, count: int, batch: int, exp: datetime
) -> tuple[str, float, float, float]:
    latencies: list[float] = []
    call: Callable[[int], None]
    if batch == 1:

        def call(n: int) -> None:
            result = publisher.revoke_token(f"jti-{n}", expires_at=exp, sub=f"user-{n % 997}")
            assert not result.queued

    else:

        def call(n: int) -> None:
            events: list[BaseEvent] = [
                TokenRevoked(
                    issuer="bench", jti=f"jti-{n}-{i}", sub=f"user-{i % 997}", expires_at=exp
                )
                for i in range(batch)
            ]
            assert not any(r.queued for r in publisher.publish_many(events))

    calls = count // batch
    call(-1)  # warm up: connect, fetch metadata
    started = time.perf_counter()
    for n in range(calls):
        t0 = time.perf_counter()
        call(n)
        latencies.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    return label, calls * batch / elapsed, _percentile(latencies, 0.5), _percentile(latencies, 0.99)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer events (CI smoke run)")
    args = parser.parse_args(argv)
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS=host:port", file=sys.stderr)
        return 2
    single, total, batch = (300, 3_000, 100) if args.quick else (2_000, 20_000, 500)

    topic = f"bench-publish-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    ensure_topic(kafka, partitions=6, max_token_lifetime=3600)
    key = SigningKey.ed25519("bench", Ed25519PrivateKey.generate())
    exp = datetime.now(UTC) + timedelta(hours=1)
    rows: list[tuple[str, float, float, float]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            modes: tuple[DeliveryMode, ...] = ("direct", "outbox")
            for mode in modes:
                settings = PublisherSettings(
                    issuer="bench",
                    kafka=kafka,
                    signing_key=key,
                    delivery=mode,
                    outbox_path=Path(tmp) / f"{mode}.sqlite3",
                    ack_timeout=30.0,
                )
                with Publisher(settings) as publisher:
                    rows.append(_run(f"{mode:6} single", publisher, single, 1, exp))
                    rows.append(_run(f"{mode:6} batch {batch}", publisher, total, batch, exp))
    finally:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            admin.delete_topics([topic])
        finally:
            admin.close()

    print(f"broker {bootstrap}, topic of 6 partitions, Ed25519-signed events, acks=all")
    print(f"{'mode':<20} {'events/s':>10} {'p50 ms':>9} {'p99 ms':>9}")
    for label, rate, p50, p99 in rows:
        print(f"{label:<20} {rate:>10,.0f} {p50 * 1e3:>9.2f} {p99 * 1e3:>9.2f}")
    print("latency is per call: one event for single rows, one batch for batch rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
