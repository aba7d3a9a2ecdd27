"""Bootstrap: time from constructing :class:`Revocast` to ready, on topics of N events.

The topic is filled with a raw kafka-python producer: one event is encoded by
:class:`EventCodec` as a template, then each record substitutes its own jti and event id and
is signed with HMAC-SHA256 (the same bytes the publisher would write), in large batches with
linger, round-robin over 3 partitions. Nothing is cached between runs.

Three ways to get ready, measured side by side on the same log:

* **log**: replaying the log (the SDK's default);
* **state topic**: ``bootstrap="state"`` without snapshot keys, reading ``<log>.state``, one
  signed record per live rule plus an offset marker per partition;
* **snapshot**: ``bootstrap="state"`` with ``snapshot_keys``, reading ``<log>.snapshots``.

The state topic and the snapshots are filled by the bench itself, not by a running worker
(which would first have to digest the N events): each log record is also written to the
state topic under its rule key — byte for byte what the worker republishes — followed by
the marker the worker writes (``streams._records.marker_record``); each jti also goes into
the snapshotter's own :class:`streams._snapshot_rules.PartitionRules`, written with its
``write_snapshot``, i.e. the code the worker runs.
"""

from __future__ import annotations

import contextlib
import time
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench._common import EVENT_KEY, create_topic, delete_topic, settings, temp_topic
from consumer_sdk import Revocast
from consumer_sdk._snapshot_reader import topic_id
from revocation_events import (
    SIGNATURE_HEADER,
    EventCodec,
    EventSigner,
    EventVerifier,
    KafkaSettings,
    SigningKey,
    TokenRevoked,
)
from streams._records import marker_record
from streams._snapshot import write_snapshot
from streams._snapshot_rules import PartitionRules

__all__ = ["BootstrapRow", "produce_revocations", "run", "signed_revocations"]

_JTI_MARK = "JTIPLACEHOLDER"
_ID_MARK = uuid.UUID(int=0)
_PARTITIONS = 3
_LIFETIME = 3600.0  # the SDK's default max_token_lifetime, which snapshots must match
SNAPSHOT_KEY = SigningKey.hmac("bench-snapshot", b"n" * 32)
READY_TIMEOUT = 600.0


@dataclass(frozen=True)
class BootstrapRow:
    events: int
    produce_s: float
    log_ready: bool
    log_s: float
    applied: int
    state_s: float | None
    """Ready from the compacted state topic; ``None``: not ready within the timeout."""
    snapshot_s: float | None
    snapshot_mb: float
    snapshot_chunks: int

    @property
    def log_rate(self) -> float:
        return self.events / self.log_s


@dataclass
class _Derived:
    """What the worker would have written for the log: state records and snapshot rules."""

    state_topic: str
    rules: list[PartitionRules]


def signed_revocations(
    n: int, expires: datetime
) -> tuple[float, Iterator[tuple[str, bytes, list[tuple[str, bytes]]]]]:
    """``(occurred_at, records)``: ``n`` records ``(jti, value, headers)`` of ``TokenRevoked``
    events expiring at ``expires``, each with its own jti (``boot-<i>``) and event id, signed
    with HMAC-SHA256 — the bytes the publisher would write — built from one encoded template
    (encoding each event would dominate the time to fill a large topic)."""
    template = TokenRevoked(issuer="bench", jti=_JTI_MARK, expires_at=expires, id=_ID_MARK)
    value = EventCodec(signer=EventSigner(EVENT_KEY)).encode(template).value
    if value.count(str(_ID_MARK).encode()) != 1 or value.count(_JTI_MARK.encode()) != 1:
        raise RuntimeError("template event does not have one jti and one id to substitute")
    head, rest = value.split(str(_ID_MARK).encode())
    salt = uuid.uuid4().int >> 64 << 64

    def records() -> Iterator[tuple[str, bytes, list[tuple[str, bytes]]]]:
        sign = EVENT_KEY.sign
        check = EventCodec(verifier=EventVerifier([EVENT_KEY.verification_key()]))
        for i in range(n):
            jti = f"boot-{i:09d}"
            body = head + str(uuid.UUID(int=salt | i)).encode() + rest
            record = body.replace(_JTI_MARK.encode(), jti.encode())
            headers = [(SIGNATURE_HEADER, sign(record))]
            if i == 0:
                check.decode(record, headers)  # the substitution yields a valid, signed event
            yield jti, record, headers

    return template.occurred_at.timestamp(), records()


def produce_revocations(kafka: KafkaSettings, n: int, *, derived: _Derived | None = None) -> float:
    """Write ``n`` signed ``TokenRevoked`` records to the topic (and, with ``derived``, the
    same records to the state topic and the jtis to the snapshot rules); return the seconds
    it took."""
    now = time.time()
    expires = datetime.fromtimestamp(now, UTC) + timedelta(hours=1)
    occurred, revocations = signed_revocations(n, expires)
    producer = KafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    start = time.perf_counter()
    try:
        for i, (jti, record, headers) in enumerate(revocations):
            key = f"jti:{jti}".encode()
            partition = i % _PARTITIONS
            producer.send(kafka.topic, key=key, value=record, headers=headers, partition=partition)
            if derived is not None:
                producer.send(
                    derived.state_topic,
                    key=key,
                    value=record,
                    headers=headers,
                    partition=partition,
                )
                derived.rules[partition].revoke_jti(jti, expires.timestamp(), occurred)
        producer.flush(600)
    finally:
        producer.close()
    return time.perf_counter() - start


def _write_markers_and_snapshots(
    kafka: KafkaSettings, derived: _Derived, snapshots: str
) -> tuple[float, int]:
    """The markers and snapshots covering the whole log; return the snapshot's MB and chunks."""
    consumer = KafkaConsumer(bootstrap_servers=list(kafka.bootstrap_servers))
    try:
        tps = [TopicPartition(kafka.topic, p) for p in range(_PARTITIONS)]
        ends = {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
        log_id = topic_id(consumer, kafka.topic)  # the worker stamps it; SDKs check it
    finally:
        consumer.close()
    producer = KafkaProducer(bootstrap_servers=list(kafka.bootstrap_servers), linger_ms=5)
    size = 0
    chunks = 0
    try:
        for p, end in ends.items():
            marker = marker_record(kafka.topic, p, end - 1, topic_id=log_id)
            producer.send(derived.state_topic, key=marker.key, value=marker.value, partition=p)
            manifest = write_snapshot(
                producer,
                topic=snapshots,
                log_topic=kafka.topic,
                partition=p,
                offset=end - 1,
                generation=int(time.time() * 1000),
                rules=derived.rules[p],
                key=SNAPSHOT_KEY,
                created_at=time.time(),
                topic_id=log_id,
            )
            size += sum(c.size for c in manifest.chunks)
            chunks += len(manifest.chunks)
        producer.flush(120)
    finally:
        producer.close()
    return size / 1e6, chunks


@contextlib.contextmanager
def _topics(kafka: KafkaSettings) -> Iterator[tuple[str, str]]:
    servers = ",".join(kafka.bootstrap_servers)
    names = (f"{kafka.topic}.state", f"{kafka.topic}.snapshots")
    for name in names:
        create_topic(servers, name, _PARTITIONS)
    try:
        yield names
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                delete_topic(servers, name)


def _ready(kafka: KafkaSettings, **mode: Any) -> tuple[bool, float, dict[str, Any]]:
    start = time.perf_counter()
    with Revocast(settings(kafka=kafka, max_token_lifetime=_LIFETIME, **mode)) as rc:
        ready = rc.wait_until_ready(READY_TIMEOUT)
        return ready, time.perf_counter() - start, rc.stats()


def run(bootstrap: str, sizes: list[int], rows: list[BootstrapRow]) -> None:
    """Append one row per size to ``rows`` as it is measured (earlier rows survive a failure).

    Not ready within the timeout is a result (``log_ready=False``, ``applied`` so far), not an
    error; ready with events missing, or a mode that fell back, is an error."""
    for n in sizes:
        with (
            temp_topic(bootstrap, "bench-bootstrap", _PARTITIONS) as kafka,
            _topics(kafka) as (
                state_topic,
                snapshots,
            ),
        ):
            derived = _Derived(state_topic, [PartitionRules(_LIFETIME, time.time) for _ in "abc"])
            produce_s = produce_revocations(kafka, n, derived=derived)
            snapshot_mb, snapshot_chunks = _write_markers_and_snapshots(kafka, derived, snapshots)
            del derived  # the writer's copy is not part of what is measured
            log_ready, log_s, stats = _ready(kafka)
            applied = stats["applied"].get("token.revoked", 0)
            if log_ready and applied != n:
                raise RuntimeError(f"bootstrap of {n:,} events ready with {applied:,} applied")
            state_ready, state_s, stats = _ready(kafka, bootstrap="state")
            if (
                stats["bootstrap"]["mode"] != "state"
                or stats["bootstrap"].get("state_refused")  # then it timed a log replay
                or (state_ready and stats["entries"]["jti"] != n)
            ):
                raise RuntimeError(f"state topic bootstrap went wrong: {stats['bootstrap']}")
            snap_ready, snap_s, stats = _ready(
                kafka, bootstrap="state", snapshot_keys=(SNAPSHOT_KEY.verification_key(),)
            )
            if (
                stats["bootstrap"]["mode"] != "snapshot"
                or stats["bootstrap"].get("snapshot_refused")
                or (snap_ready and stats["entries"]["jti"] != n)
            ):
                raise RuntimeError(f"snapshot bootstrap went wrong: {stats['bootstrap']}")
            rows.append(
                BootstrapRow(
                    n,
                    produce_s,
                    log_ready,
                    log_s,
                    applied,
                    state_s if state_ready else None,
                    snap_s if snap_ready else None,
                    snapshot_mb,
                    snapshot_chunks,
                )
            )
            print(format_row(rows[-1]), flush=True)


HEADER = (
    f"{'events':>10} {'produce s':>9} {'log replay s':>12} {'events/s':>10} {'ready':>5} "
    f"{'state topic s':>13} {'snapshot s':>10} {'snapshot':>15}"
)


def _seconds(value: float | None) -> str:
    return "NOT ready" if value is None else f"{value:.2f}"


def format_row(r: BootstrapRow) -> str:
    return (
        f"{r.events:>10,} {r.produce_s:>9.1f} {r.log_s:>12.2f} {r.log_rate:>10,.0f} "
        f"{r.log_ready!s:>5} {_seconds(r.state_s):>13} {_seconds(r.snapshot_s):>10} "
        f"{f'{r.snapshot_mb:.1f} MB/{r.snapshot_chunks}':>15}"
        + ("" if r.log_ready else f"  (NOT ready: {r.applied:,} applied after {r.log_s:.0f}s)")
    )
