"""The real streams worker as a child process, the events fed to it, and its state topic.

Shared by the worker's own broker test and the SDK's state-topic bootstrap tests.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumer_sdk._marker import read_marker
from revocast.cli._streams import worker_argv
from revocation_events import (
    EncodedEvent,
    Event,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)
from streams import rule_key
from tests._kafka_fixtures import wait_until
from tests.streams._support import KEY_SPEC, SIGNING_CODEC

REPO = Path(__file__).resolve().parents[2]
_READY = "[^Worker]: Ready"


class Worker:
    """``revocast streams`` as a child process with its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env = env
        self._log = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ready_before = self.output().count(_READY) if self._log.exists() else 0
        with self._log.open("ab") as log:
            self._proc = subprocess.Popen(
                worker_argv([]),
                env=self._env,
                cwd=self._log.parent,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(
            lambda: self.output().count(_READY) > ready_before or not self.alive(),
            timeout=45,
            message="the worker to be ready",
        )
        assert self.alive(), self.output()[-3000:]

    def kill(self) -> None:
        assert self._proc is not None
        self._proc.kill()
        self._proc.wait(timeout=10)

    def stop(self) -> int:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGTERM)
        return self._proc.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: as a long GC pause or a partition from the group coordinator."""
        assert self._proc is not None
        self._proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._proc is not None
        self._proc.send_signal(signal.SIGCONT)

    def ensure_dead(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        return self._log.read_text(errors="replace")


def app_id(log_topic: str) -> str:
    return f"{log_topic}-streams"


def worker_env(bootstrap: str, log_topic: str, data_dir: Path) -> dict[str, str]:
    """Fast ticks, commits and windows, so tests see markers and stats within seconds."""
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REVOCAST_TOPIC": log_topic,
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_STREAMS_APP_ID": app_id(log_topic),
        "REVOCAST_STREAMS_DATA_DIR": str(data_dir),
        "REVOCAST_STREAMS_TICK_SECONDS": "0.5",
        "REVOCAST_STREAMS_COMMIT_INTERVAL_SECONDS": "0.5",
        "REVOCAST_STREAMS_SESSION_TIMEOUT_SECONDS": "6",
        "REVOCAST_STREAMS_WINDOW_SECONDS": "3",
        "REVOCAST_STREAMS_WINDOW_GRACE_SECONDS": "1",
        "REVOCAST_STREAMS_ALERT_BLOCKS_PER_WINDOW": "10",
        # Short-lived rules must be tombstoned within the test, not after the SDK leeway.
        "REVOCAST_STREAMS_EXPIRY_MARGIN_SECONDS": "0",
    }


@contextmanager
def running_worker(bootstrap: str, log_topic: str, workdir: Path) -> Iterator[Worker]:
    """A started worker for ``log_topic``; afterwards it is killed and the topics it made
    are deleted."""
    worker = Worker(worker_env(bootstrap, log_topic, workdir / "data"), workdir / "worker.log")
    try:
        worker.start()
        yield worker
    finally:
        worker.ensure_dead()
        delete_worker_topics(bootstrap, log_topic)


def delete_worker_topics(bootstrap: str, log_topic: str, *apps: str) -> None:
    """Delete the output topics of ``log_topic`` and the internal ones of its workers (the
    default app id, and ``apps``)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        extra = [f"{log_topic}.{suffix}" for suffix in ("state", "stats", "alerts")] + [
            f"{app}-{suffix}"
            for app in (app_id(log_topic), *apps)
            for suffix in ("ticks", "rules-changelog", "windows-changelog", "__assignor-__leader")
        ]
        admin.delete_topics(extra, timeout_ms=30_000, raise_errors=False)
    finally:
        admin.close()


def publish(producer: KafkaProducer, topic: str, records: list[EncodedEvent]) -> None:
    for record in records:
        producer.send(topic, key=record.key, value=record.value, headers=list(record.headers))
    producer.flush(timeout=30)


# -- the events ---------------------------------------------------------------


@dataclass
class Scenario:
    """Signed records to publish and, per rule key, the event that must win it."""

    created: float
    records: list[EncodedEvent] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    short_lived: set[str] = field(default_factory=set)
    expired: set[str] = field(default_factory=set)
    duplicated: list[Event] = field(default_factory=list)

    def add(self, event: Event) -> None:
        self.records.append(SIGNING_CODEC.encode(event))
        self.events.append(event)

    def duplicate(self, rng: random.Random, count: int) -> None:
        for index in rng.sample(range(len(self.events)), count):
            self.records.append(self.records[index])
            self.duplicated.append(self.events[index])

    def counted(self) -> tuple[int, int]:
        """The least and the most the stats may count.

        Every valid record counts once, except a duplicate of its rule's current winner
        (the worker recognises duplicates only by comparing with the winner). A duplicate
        of a short-lived winner that expired before the worker saw it counts too, so those
        are the margin."""
        winners = {event.id for event in expected(self.events, self.created).values()}
        least = len(self.events) + sum(event.id not in winners for event in self.duplicated)
        margin = sum(
            event.id in winners and rule_key(event) in self.short_lived for event in self.duplicated
        )
        return least, least + margin

    def forged(self, count: int) -> None:
        for n in range(count):
            good = self.records[n]
            self.records.append(EncodedEvent(good.key, good.value + b" ", good.headers))


def scenario(
    rng: random.Random,
    now: datetime,
    tag: str,
    size: int,
    short_lived: float = 8.0,
    competing: bool = False,
) -> Scenario:
    """Every kind of rule, most with several events competing for it, duplicates and forged
    records. ``competing`` also revokes some jtis, sids and deletions several times (as a
    producer does: the same token ``exp``, ``expires_at`` = ``occurred_at`` + an hour), and
    reports a revoked key twice."""
    s = Scenario(created=now.timestamp())
    hour = now + timedelta(hours=1)
    subs = [f"{tag}-u{n}" for n in range(40)]
    # Short-lived first, so that even a slow worker stores them before they expire.
    for n in range(size // 40):
        short = now + timedelta(seconds=short_lived)
        s.add(TokenRevoked(issuer="t", jti=f"{tag}-short{n}", expires_at=short))
        s.short_lived.add(f"jti:{tag}-short{n}")
        s.add(TokenRevoked(issuer="t", jti=f"{tag}-old{n}", expires_at=now - timedelta(hours=1)))
        s.expired.add(f"jti:{tag}-old{n}")
    owners = [rng.choice(subs) for _ in range(size)]
    for n, owner in enumerate(owners):
        s.add(TokenRevoked(issuer="t", jti=f"{tag}-j{n}", sub=owner, expires_at=hour))
    for n in range(size // 20):
        s.add(SessionRevoked(issuer="t", sid=f"{tag}-s{n}", expires_at=hour))
    for sub in subs:
        for minutes in rng.sample(range(1, 50), 3):
            s.add(
                SubjectTokensRevoked(
                    issuer="t",
                    sub=sub,
                    issued_before=now - timedelta(minutes=minutes),
                    expires_at=hour,
                )
            )
        for version in rng.sample(range(1, 100), 3):
            s.add(SubjectVersionBumped(issuer="t", sub=sub, min_version=version, expires_at=hour))
        for seconds in rng.sample(range(1, 600), 4):
            occurred = now - timedelta(seconds=seconds)
            if rng.random() < 0.5:
                s.add(SubjectBlocked(issuer="t", sub=sub, occurred_at=occurred))
            else:
                s.add(SubjectUnblocked(issuer="t", sub=sub, occurred_at=occurred, expires_at=hour))
    for sub in subs[:10]:
        s.add(SubjectDeleted(issuer="t", sub=sub, expires_at=hour))
    s.add(KeyRevoked(issuer="t", kid=f"{tag}-kid"))
    if competing:
        for n in rng.sample(range(size), size // 20):
            again = now - timedelta(seconds=rng.randrange(1, 120))
            s.add(
                TokenRevoked(
                    issuer="t", jti=f"{tag}-j{n}", sub=owners[n], occurred_at=again, expires_at=hour
                )
            )
        for n in rng.sample(range(size // 20), size // 80):
            again = now + timedelta(seconds=rng.randrange(1, 120))
            s.add(
                SessionRevoked(
                    issuer="t", sid=f"{tag}-s{n}", occurred_at=again, expires_at=again + HOUR
                )
            )
        for sub in subs[:5]:
            again = now + timedelta(seconds=rng.randrange(1, 120))
            s.add(SubjectDeleted(issuer="t", sub=sub, occurred_at=again, expires_at=again + HOUR))
        s.add(KeyRevoked(issuer="t", kid=f"{tag}-kid", occurred_at=now - timedelta(minutes=5)))
    for minutes in (3, 1, 2):
        s.add(
            GlobalTokensRevoked(
                issuer="t", issued_before=now - timedelta(minutes=minutes), expires_at=hour
            )
        )
    s.duplicate(rng, size // 10)
    s.forged(5)
    return s


HOUR = timedelta(hours=1)


def _winner_order(event: Event) -> tuple[float, ...]:
    """The rule order, written out independently of ``streams._rules.rank`` (ids aside)."""
    expires = event.expires_at.timestamp() if event.expires_at is not None else float("inf")
    occurred = event.occurred_at.timestamp()
    match event:
        case SubjectTokensRevoked() | GlobalTokensRevoked():
            return (event.issued_before.timestamp(), expires, -occurred)
        case SubjectVersionBumped():
            return (float(event.min_version), expires, -occurred)
        case SubjectBlocked() | SubjectUnblocked():
            return (occurred,)
        case KeyRevoked():
            return (-occurred,)
        case _:
            return (expires, -occurred)


def expected(events: list[Event], now: float) -> dict[str, Event]:
    """The winner of every rule still live at ``now``."""
    winners: dict[str, Event] = {}
    for event in events:
        expires = event.expires_at
        if expires is not None and expires.timestamp() <= now:
            continue
        key = rule_key(event)
        if key not in winners or _winner_order(event) > _winner_order(winners[key]):
            winners[key] = event
    return winners


# -- the state topic ------------------------------------------------------------


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {
            tp.partition: off for tp, off in consumer.end_offsets(tps, timeout_ms=10_000).items()
        }
    finally:
        consumer.close()


def markers(bootstrap: str, log_topic: str) -> dict[int, int]:
    """The last offset marker of every state partition."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    state_topic = f"{log_topic}.state"
    found: dict[int, int] = {}
    try:
        tps = [
            TopicPartition(state_topic, p) for p in consumer.partitions_for_topic(state_topic) or ()
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    marker = read_marker(record.key, record.value, log_topic, record.partition)
                    if marker is not None:
                        found[record.partition] = marker.offset
    finally:
        consumer.close()
    return found


def wait_for_state(bootstrap: str, log_topic: str, timeout: float) -> None:
    """Until the state topic's markers cover the whole log as it is now."""
    ends = end_offsets(bootstrap, log_topic)
    deadline = time.monotonic() + timeout
    while True:
        found = markers(bootstrap, log_topic)
        if all(found.get(p, -1) >= end - 1 for p, end in ends.items() if end):
            return
        assert time.monotonic() < deadline, f"state markers {found} behind the log ends {ends}"
