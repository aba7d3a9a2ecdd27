"""Bootstrap: time from constructing :class:`Revocast` to ready, on topics of N events.

The topic is filled with a raw kafka-python producer: one event is encoded by
:class:`EventCodec` as a template, then each record substitutes its own jti and event id and
is signed with HMAC-SHA256 (the same bytes the publisher would write), in large batches with
linger. Nothing is cached between runs.

Two modes: replaying the log (the SDK's default) and, once it exists, loading the compacted
state topic. The second is being built separately; :func:`state_topic_mode` reports whether
the SDK offers it, and the report prints "n/a (not built)" until it does.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaProducer

from bench._common import EVENT_KEY, settings, temp_topic
from consumer_sdk import ConsumerSettings, Revocast
from revocation_events import (
    SIGNATURE_HEADER,
    EventCodec,
    EventSigner,
    EventVerifier,
    KafkaSettings,
    TokenRevoked,
)

__all__ = ["BootstrapRow", "produce_revocations", "run", "state_topic_mode"]

_JTI_MARK = "JTIPLACEHOLDER"
_ID_MARK = uuid.UUID(int=0)
NOT_BUILT = "n/a (not built)"
READY_TIMEOUT = 600.0


@dataclass(frozen=True)
class BootstrapRow:
    events: int
    produce_s: float
    log_ready: bool
    log_s: float
    applied: int
    state_topic: str  # seconds, or why not measured

    @property
    def log_rate(self) -> float:
        return self.events / self.log_s


def state_topic_mode() -> str | None:
    """The name of the SDK's state-topic bootstrap mode, or ``None`` while it is not built.

    Hook for the compacted-state bootstrap: the SDK is expected to grow a ``bootstrap``
    setting with a state-topic mode. When it does, :func:`_bootstrap_state_topic` is where
    its measurement goes.
    """
    fields = {f.name: f for f in dataclasses.fields(ConsumerSettings)}
    field = fields.get("bootstrap")
    if field is None:
        return None
    return "state_topic" if "state" in str(field.type).lower() + str(field.default) else None


def _bootstrap_state_topic(kafka: KafkaSettings, events: int) -> str:
    mode = state_topic_mode()
    if mode is None:
        return NOT_BUILT
    # The settings exist but how the state topic is named and filled is not settled yet.
    return f"n/a (ConsumerSettings.bootstrap found; {mode!r} not wired into the bench yet)"


def produce_revocations(kafka: KafkaSettings, n: int) -> float:
    """Write ``n`` signed ``TokenRevoked`` records to the topic; return the seconds it took."""
    expires = datetime.now(UTC) + timedelta(hours=1)
    template = TokenRevoked(issuer="bench", jti=_JTI_MARK, expires_at=expires, id=_ID_MARK)
    value = EventCodec(signer=EventSigner(EVENT_KEY)).encode(template).value
    if value.count(str(_ID_MARK).encode()) != 1 or value.count(_JTI_MARK.encode()) != 1:
        raise RuntimeError("template event does not have one jti and one id to substitute")
    head, rest = value.split(str(_ID_MARK).encode())
    producer = KafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    salt = uuid.uuid4().int >> 64 << 64
    start = time.perf_counter()
    try:
        sign = EVENT_KEY.sign
        check = EventCodec(verifier=EventVerifier([EVENT_KEY.verification_key()]))
        for i in range(n):
            jti = f"boot-{i:09d}"
            body = head + str(uuid.UUID(int=salt | i)).encode() + rest
            record = body.replace(_JTI_MARK.encode(), jti.encode())
            headers = [(SIGNATURE_HEADER, sign(record))]
            if i == 0:
                check.decode(record, headers)  # the substitution yields a valid, signed event
            producer.send(kafka.topic, key=f"jti:{jti}".encode(), value=record, headers=headers)
        producer.flush(600)
    finally:
        producer.close()
    return time.perf_counter() - start


def run(bootstrap: str, sizes: list[int], rows: list[BootstrapRow]) -> None:
    """Append one row per size to ``rows`` as it is measured (earlier rows survive a failure).

    Not ready within the timeout is a result (``log_ready=False``, ``applied`` so far), not an
    error; ready with events missing is an error."""
    for n in sizes:
        with temp_topic(bootstrap, "bench-bootstrap") as kafka:
            produce_s = produce_revocations(kafka, n)
            start = time.perf_counter()
            with Revocast(settings(kafka=kafka)) as rc:
                ready = rc.wait_until_ready(READY_TIMEOUT)
                log_s = time.perf_counter() - start
                applied = rc.stats()["applied"].get("token.revoked", 0)
            if ready and applied != n:
                raise RuntimeError(f"bootstrap of {n:,} events ready with {applied:,} applied")
            rows.append(
                BootstrapRow(n, produce_s, ready, log_s, applied, _bootstrap_state_topic(kafka, n))
            )
            print(format_row(rows[-1]), flush=True)


HEADER = (
    f"{'events':>10} {'produce s':>9} {'log replay s':>12} {'events/s':>10} {'ready':>5}  "
    "state topic s"
)


def format_row(r: BootstrapRow) -> str:
    return (
        f"{r.events:>10,} {r.produce_s:>9.1f} {r.log_s:>12.2f} {r.log_rate:>10,.0f} "
        f"{r.log_ready!s:>5}  {r.state_topic}"
        + ("" if r.log_ready else f"  (NOT ready: {r.applied:,} applied after {r.log_s:.0f}s)")
    )
