"""A service is SIGKILLed mid-replay and restarted: it is not ready until it has caught up,
and it ends with exactly the state of a service that never died."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaProducer

from revocation_events import (
    BaseEvent,
    EventCodec,
    EventSigner,
    SessionRevoked,
    SubjectBlocked,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)
from tests._kafka_fixtures import MakeTopic
from tests.consumer_sdk._helpers import EVENT_KEY
from tests.faults._figures import record_figures

pytestmark = pytest.mark.kafka

EVENTS = 20_000
KILL_AFTER = 2_000
LAST_JTI = "jti-last"
CODEC = EventCodec(signer=EventSigner(EVENT_KEY))


def mixed_events(count: int, seed: int = 8) -> list[BaseEvent]:
    """Mostly token revocations, with every per-subject rule in between."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    hour = now + timedelta(hours=1)
    events: list[BaseEvent] = []
    for n in range(count - 1):
        sub = f"user-{rng.randrange(300)}"
        at = now - timedelta(seconds=rng.randrange(600))
        roll = rng.random()
        event: BaseEvent
        if roll < 0.85:
            event = TokenRevoked(issuer="idp", jti=f"jti-{n}", sub=sub, expires_at=hour)
        elif roll < 0.9:
            event = SubjectTokensRevoked(
                issuer="idp", sub=sub, issued_before=at, occurred_at=at, expires_at=hour
            )
        elif roll < 0.95:
            kind = SubjectBlocked if rng.random() < 0.5 else SubjectUnblocked
            extra: dict[str, Any] = {} if kind is SubjectBlocked else {"expires_at": hour}
            event = kind(issuer="idp", sub=sub, occurred_at=at, **extra)
        elif roll < 0.98:
            event = SubjectVersionBumped(
                issuer="idp", sub=sub, min_version=rng.randrange(10), expires_at=hour
            )
        else:
            event = SessionRevoked(issuer="idp", sid=f"sid-{n}", sub=sub, expires_at=hour)
        events.append(event)
    events.append(TokenRevoked(issuer="idp", jti=LAST_JTI, expires_at=hour))
    return events


def worker(bootstrap: str, topic: str, mode: str, arg: str) -> subprocess.Popen[str]:
    # One hash seed for every worker: jti fingerprints in the snapshot use str hashes.
    env = {**os.environ, "PYTHONHASHSEED": "8"}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.faults._replay_worker", bootstrap, topic, mode, arg],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def report_of(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return report


def test_consumer_sigkilled_mid_replay_restarts_not_ready_until_caught_up_with_identical_state(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic(partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=20)
    try:
        for event in mixed_events(EVENTS):
            rec = CODEC.encode(event)
            producer.send(topic, key=rec.key, value=rec.value, headers=list(rec.headers))
        producer.flush(60)
    finally:
        producer.close(timeout=10)

    reference = worker(kafka_bootstrap, topic, "snapshot", LAST_JTI)
    doomed = worker(kafka_bootstrap, topic, "die", str(KILL_AFTER))
    try:
        assert doomed.stdout is not None
        line = doomed.stdout.readline().split()
        assert line[:2] == ["mid", "initializing"], line
        doomed.kill()
        assert doomed.wait(timeout=30) == -9
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()

    restarted = report_of(worker(kafka_bootstrap, topic, "snapshot", LAST_JTI))
    never_died = report_of(reference)

    for report in (restarted, never_died):
        assert report["ready"]
        assert report["refused_before_ready"], "verify must fail closed during the replay"
        assert report["handled_at_ready"] == EVENTS, "ready before every record was handled"
    assert restarted["snapshot"] == never_died["snapshot"]
    assert restarted["entries"] == never_died["entries"]
    assert restarted["entries"]["jti"] > 0.8 * EVENTS
    record_figures(
        "consumer_sigkill_mid_replay",
        events_sent=EVENTS,
        killed_after_applied=int(line[2]),
        handled_at_ready=restarted["handled_at_ready"],
        lost=EVENTS - restarted["handled_at_ready"],
        snapshot_identical=int(restarted["snapshot"] == never_died["snapshot"]),
    )
