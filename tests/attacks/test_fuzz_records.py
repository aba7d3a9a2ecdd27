"""Fuzz the consumer with over 10,000 hostile records on a real topic.

Hypothesis draws small record *specs* (a kind and a seed); each spec expands
deterministically into the record bytes, so the draws stay tiny while the records are not
(up to 20 KB). Random bytes, truncated JSON, wrong types, unknown kinds, newer schema
versions, oversized payloads, bad and unknown signatures, tombstones and replayed records
are interleaved with valid signed revocations, produced with a plain ``KafkaProducer``, and
read by one SDK instance: its thread must never fail (status stays VALID, no reconnect),
every record must be counted (applied, unchanged or skipped under a reason) and every valid
revocation applied.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import Phase, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from kafka import KafkaProducer

from consumer_sdk import DataSourceState, Revocast, SourceStatus, TokenRevokedError
from revocation_events import (
    SIGNATURE_HEADER,
    EventCodec,
    EventSigner,
    KafkaSettings,
    SigningKey,
    TokenRevoked,
)
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import EVENT_KEY, settings, token
from tests.faults._figures import record_figures

pytestmark = pytest.mark.kafka

EXAMPLES = 210
PER_EXAMPLE = 50
SIGNER = EventSigner(EVENT_KEY)
CODEC = EventCodec(signer=SIGNER)
STRANGER = EventSigner(SigningKey.hmac("stranger", b"x" * 32))
EXPIRES = datetime.now(UTC) + timedelta(hours=2)

# kind -> the skip reason it must be counted under ("applied"/"unchanged" for valid ones)
KINDS: dict[str, str] = {
    "valid": "applied",
    "replayed": "unchanged",
    "random_bytes": "garbage",
    "truncated_json": "garbage",
    "wrong_type": "invalid",
    "not_an_object": "invalid",
    "tombstone": "invalid",
    "unknown_kind": "unknown_type",
    "newer_schema": "newer_schema",
    "oversized": "oversized",
    "bad_signature": "bad_signature",
    "unknown_key": "unknown_key",
    "unsigned": "unsigned",
}
WEIGHTS = {"valid": 6, "replayed": 1, "oversized": 1}
Spec = tuple[str, int]
Record = tuple[bytes | None, list[tuple[str, bytes]]]


class Expander:
    """Turns specs into records; remembers valid records for replays."""

    def __init__(self) -> None:
        self.valid_jtis: list[str] = []
        self.valid_records: list[Record] = []
        self.kinds: Counter[str] = Counter()

    def record(self, spec: Spec) -> Record:
        kind, seed = spec
        rng = random.Random(seed)
        if kind == "replayed" and not self.valid_records:
            kind = "valid"
        self.kinds[kind] += 1
        if kind == "valid":
            jti = f"fuzz-{len(self.valid_jtis)}-{seed}"
            self.valid_jtis.append(jti)
            rec = CODEC.encode(TokenRevoked(issuer="idp", jti=jti, expires_at=EXPIRES))
            self.valid_records.append((rec.value, list(rec.headers)))
            return self.valid_records[-1]
        if kind == "replayed":
            return rng.choice(self.valid_records)
        if kind == "tombstone":
            return None, []
        if kind == "unsigned":
            return EventCodec().encode(event_for(rng)).value, []
        if kind == "unknown_key":
            value = CODEC.encode(event_for(rng)).value
            return value, [STRANGER.header(value)]
        if kind == "bad_signature":
            rec = CODEC.encode(event_for(rng))
            sig = bytearray(rec.headers[0][1])
            sig[-2] = ord("A") if sig[-2] != ord("A") else ord("B")
            return rec.value, [(SIGNATURE_HEADER, bytes(sig))]
        return signed(self._payload(kind, rng))

    def _payload(self, kind: str, rng: random.Random) -> bytes:
        base = json.loads(CODEC.encode(event_for(rng)).value)
        if kind == "random_bytes":
            return rng.randbytes(rng.randrange(1, 4096))
        if kind == "truncated_json":
            text = json.dumps(base, separators=(",", ":")).encode()
            return text[: rng.randrange(1, len(text))]
        if kind == "wrong_type":
            wrong: list[tuple[str, Any]] = [
                ("jti", 12345),
                ("jti", None),
                ("jti", []),
                ("jti", ""),
                ("expires_at", "not a date"),
                ("expires_at", [1, 2]),
                ("id", "not-a-uuid"),
                ("issuer", {}),
                ("occurred_at", "yesterday"),
            ]
            field, bad = rng.choice(wrong)
            base[field] = bad
        elif kind == "not_an_object":
            return json.dumps(rng.choice([[base], 42, "event", None, True])).encode()
        elif kind == "unknown_kind":
            base["type"] = rng.choice(["token.resurrected", "", "TOKEN.REVOKED", "x" * 300])
        elif kind == "newer_schema":
            base["v"] = rng.randrange(2, 100)
        elif kind == "oversized":
            base["reason"] = "x" * rng.randrange(17_000, 20_000)
        return json.dumps(base).encode()


def event_for(rng: random.Random) -> TokenRevoked:
    return TokenRevoked(issuer="idp", jti=f"forged-{rng.randrange(10**9)}", expires_at=EXPIRES)


def signed(value: bytes) -> Record:
    return value, [SIGNER.header(value)]


specs = st.tuples(
    st.sampled_from([k for k in KINDS for _ in range(WEIGHTS.get(k, 2))]),
    st.integers(min_value=0, max_value=2**32),
)


def generate() -> list[Spec]:
    drawn: list[Spec] = []

    @hsettings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        phases=[Phase.generate],
        deadline=None,
    )
    @given(st.lists(specs, min_size=PER_EXAMPLE, max_size=PER_EXAMPLE))
    def collect(batch: list[Spec]) -> None:
        drawn.extend(batch)

    collect()
    return drawn


def test_fuzzed_records_never_crash_the_sync_thread_and_are_all_counted(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    expander = Expander()
    records = [expander.record(spec) for spec in generate()]
    total = len(records)
    assert total >= 10_000
    topic = make_topic(partitions=3)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20, max_request_size=2**20
    )
    try:
        for n, (value, headers) in enumerate(records):
            producer.send(topic, key=str(n % 97).encode(), value=value, headers=headers)
        producer.flush(60)
    finally:
        producer.close(timeout=10)

    statuses: list[DataSourceState] = []
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=topic)
    with Revocast(settings(kafka=kafka)) as rc:

        def seen(status: SourceStatus) -> None:
            statuses.append(status.state)

        rc.add_status_listener(seen)
        assert rc.wait_until_ready(90)

        wait_until(
            lambda: handled_total(rc.stats()) >= total, timeout=60, message="every record handled"
        )
        stats = rc.stats()
        for jti in expander.valid_jtis:
            with pytest.raises(TokenRevokedError):
                rc.verify(token(jti=jti))
        assert rc.status.state is DataSourceState.VALID

    skipped: dict[str, int] = stats["skipped"]
    expected: Counter[str] = Counter()
    for kind, count in expander.kinds.items():
        expected[KINDS[kind]] += count
    assert handled_total(stats) == total
    assert stats["reconnects"] == 0
    assert DataSourceState.INTERRUPTED not in statuses
    assert stats["applied"] == {"token.revoked": expected["applied"]}
    assert sum(stats["unchanged"].values()) == expected["unchanged"]
    for reason in ("unknown_type", "newer_schema", "oversized", "bad_signature", "unknown_key"):
        assert skipped.get(reason, 0) == expected[reason], reason
    assert skipped.get("unsigned", 0) == expected["unsigned"]
    garbage = skipped.get("not_json", 0) + skipped.get("invalid", 0)
    assert garbage == expected["garbage"] + expected["invalid"]
    record_figures(
        "fuzzed_records",
        records=total,
        valid=len(expander.valid_jtis),
        applied=stats["applied"]["token.revoked"],
        skipped=sum(skipped.values()),
        crashes=stats["reconnects"],
        uncounted=total - handled_total(stats),
        **{f"skipped_{k}": v for k, v in sorted(skipped.items())},
    )


def handled_total(stats: dict[str, Any]) -> int:
    return sum(sum(stats[k].values()) for k in ("applied", "unchanged", "skipped"))
