"""The real worker process against a real broker: state topic, markers, stats, alerts, crash."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

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
from streams import OFFSETS_KEY_PREFIX, parse_marker, rule_key
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.streams._support import KEY_SPEC, SIGNING_CODEC, VERIFYING_CODEC

pytestmark = pytest.mark.kafka

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

    def ensure_dead(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=10)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def output(self) -> str:
        return self._log.read_text(errors="replace")


@dataclass
class Setup:
    bootstrap: str
    log_topic: str
    worker: Worker
    producer: KafkaProducer

    @property
    def state_topic(self) -> str:
        return f"{self.log_topic}.state"

    def publish(self, records: list[EncodedEvent]) -> None:
        for record in records:
            self.producer.send(
                self.log_topic, key=record.key, value=record.value, headers=list(record.headers)
            )
        self.producer.flush(timeout=30)


@pytest.fixture
def setup(kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path) -> Iterator[Setup]:
    log_topic = make_topic(partitions=3)
    app_id = f"{log_topic}-streams"
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REVOCAST_TOPIC": log_topic,
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_STREAMS_APP_ID": app_id,
        "REVOCAST_STREAMS_DATA_DIR": str(tmp_path / "data"),
        "REVOCAST_STREAMS_TICK_SECONDS": "0.5",
        "REVOCAST_STREAMS_COMMIT_INTERVAL_SECONDS": "0.5",
        "REVOCAST_STREAMS_SESSION_TIMEOUT_SECONDS": "6",
        "REVOCAST_STREAMS_WINDOW_SECONDS": "3",
        "REVOCAST_STREAMS_WINDOW_GRACE_SECONDS": "1",
        "REVOCAST_STREAMS_ALERT_BLOCKS_PER_WINDOW": "10",
    }
    worker = Worker(env, tmp_path / "worker.log")
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        yield Setup(kafka_bootstrap, log_topic, worker, producer)
    finally:
        producer.close(timeout=10)
        worker.ensure_dead()
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
        try:
            extra = [f"{log_topic}.{suffix}" for suffix in ("state", "stats", "alerts")] + [
                f"{app_id}-{suffix}"
                for suffix in (
                    "ticks",
                    "rules-changelog",
                    "windows-changelog",
                    "__assignor-__leader",
                )
            ]
            admin.delete_topics(extra, timeout_ms=30_000, raise_errors=False)
        finally:
            admin.close()


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
        encoded = SIGNING_CODEC.encode(event)
        self.records.append(encoded)
        self.events.append(VERIFYING_CODEC.decode(encoded.value, encoded.headers))

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
        winners = {event.id for event in _expected(self.events, self.created).values()}
        least = len(self.events) + sum(event.id not in winners for event in self.duplicated)
        margin = sum(
            event.id in winners and rule_key(event) in self.short_lived for event in self.duplicated
        )
        return least, least + margin

    def forged(self, count: int) -> None:
        for n in range(count):
            good = self.records[n]
            self.records.append(EncodedEvent(good.key, good.value + b" ", good.headers))


def _scenario(
    rng: random.Random, now: datetime, tag: str, size: int, short_lived: float = 8.0
) -> Scenario:
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
    for n in range(size):
        s.add(TokenRevoked(issuer="t", jti=f"{tag}-j{n}", sub=rng.choice(subs), expires_at=hour))
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
    for minutes in (3, 1, 2):
        s.add(
            GlobalTokensRevoked(
                issuer="t", issued_before=now - timedelta(minutes=minutes), expires_at=hour
            )
        )
    s.duplicate(rng, size // 10)
    s.forged(5)
    return s


def _winner_order(event: Event) -> tuple[float, ...]:
    match event:
        case SubjectTokensRevoked() | GlobalTokensRevoked():
            return (event.issued_before.timestamp(),)
        case SubjectVersionBumped():
            return (float(event.min_version),)
        case SubjectBlocked() | SubjectUnblocked():
            return (event.occurred_at.timestamp(),)
        case _:
            return (0.0,)


def _expected(events: list[Event], now: float) -> dict[str, Event]:
    winners: dict[str, Event] = {}
    for event in events:
        expires = event.expires_at
        if expires is not None and expires.timestamp() <= now:
            continue
        key = rule_key(event)
        if key not in winners or _winner_order(event) > _winner_order(winners[key]):
            winners[key] = event
    return winners


# -- reading the state topic ----------------------------------------------------


@dataclass
class State:
    live: dict[str, Event]
    tombstoned: set[str]
    written: set[str]
    """Keys that had a live record at some point (tombstoned ones included)."""
    markers: dict[int, int]
    ends: dict[int, int]
    """End offsets of the log, snapshotted before the state was read."""


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {
            tp.partition: off for tp, off in consumer.end_offsets(tps, timeout_ms=10_000).items()
        }
    finally:
        consumer.close()


def _read_state(setup: Setup) -> State:
    ends = _end_offsets(setup.bootstrap, setup.log_topic)
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap, enable_auto_commit=False)
    latest: dict[str, tuple[bytes | None, list[tuple[str, bytes]]]] = {}
    written: set[str] = set()
    markers: dict[int, int] = {}
    try:
        tps = [
            TopicPartition(setup.state_topic, p)
            for p in consumer.partitions_for_topic(setup.state_topic) or ()
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=500).items():
                for record in batch:
                    key = record.key.decode()
                    if key.startswith(OFFSETS_KEY_PREFIX):
                        partition, offset = parse_marker(record.value)
                        assert partition == tp.partition
                        markers[partition] = offset
                    else:
                        latest[key] = (record.value, list(record.headers))
                        if record.value is not None:
                            written.add(key)
    finally:
        consumer.close()
    live = {
        key: VERIFYING_CODEC.decode(value, headers)
        for key, (value, headers) in latest.items()
        if value is not None
    }
    tombstoned = {key for key, (value, _) in latest.items() if value is None}
    return State(live, tombstoned, written, markers, ends)


def _caught_up(state: State) -> bool:
    return all(state.markers.get(p, -1) >= end - 1 for p, end in state.ends.items() if end)


def _poll_state(setup: Setup, done: Callable[[State], bool], timeout: float) -> State:
    deadline = time.monotonic() + timeout
    while True:
        state = _read_state(setup)
        if done(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(
                f"state topic still behind after {timeout}s: markers {state.markers}, "
                f"log ends {state.ends}, {len(state.live)} live, "
                f"{len(state.tombstoned)} tombstones\n{setup.worker.output()[-4000:]}"
            )


def _settled(state: State, short_lived: set[str]) -> bool:
    """Caught up with the log, and the short-lived rules (all expired by now) are gone."""
    return _caught_up(state) and not short_lived & set(state.live)


def _assert_state_matches(
    setup: Setup,
    state: State,
    scenario_events: list[Event],
    short_lived: set[str],
    expired: set[str],
) -> None:
    expected = _expected(scenario_events, time.time())
    missing = set(expected) - set(state.live)
    assert not missing, _diagnose(setup, missing)
    assert set(state.live) == set(expected)
    wrong = {k for k, event in state.live.items() if event.id != expected[k].id}
    assert not wrong, f"wrong winners for {sorted(wrong)[:5]}"
    # A short-lived rule that expired before the worker saw it is never stored (under load
    # that happens); every one that was stored must end in a tombstone.
    assert short_lived & state.written <= state.tombstoned
    assert not expired & state.written


def _diagnose(setup: Setup, missing: set[str]) -> str:
    """Where the missing rules are: in the rules table's changelog or not, and the group's
    committed offsets next to the log's end offsets."""
    app_id = f"{setup.log_topic}-streams"
    changelog = f"{app_id}-rules-changelog"
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap, enable_auto_commit=False)
    in_table: set[str] = set()
    try:
        tps = [TopicPartition(changelog, p) for p in consumer.partitions_for_topic(changelog) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                for record in batch:
                    key = record.key.decode().partition("|")[2]
                    if key in missing and record.value is not None:
                        in_table.add(key)
    finally:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap, client_id="revocast-tests")
    try:
        committed = {
            tp.partition: meta.offset
            for tp, meta in admin.list_group_offsets(app_id)[app_id].items()
            if tp.topic == setup.log_topic
        }
    finally:
        admin.close()
    return (
        f"{len(missing)} live rules missing from the state topic, e.g. {sorted(missing)[:5]}; "
        f"{len(in_table)} of them are in the table's changelog; committed offsets "
        f"{committed}, log ends {_end_offsets(setup.bootstrap, setup.log_topic)}\n"
        f"{setup.worker.output()[-3000:]}"
    )


def _read_json(bootstrap: str, topic: str) -> list[dict[str, object]]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        docs: list[dict[str, object]] = []
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500).values():
                docs.extend(json.loads(record.value) for record in batch)
        return docs
    finally:
        consumer.close()


# -- the test -------------------------------------------------------------------


def test_worker_compacts_the_log_into_state_and_survives_kill_9(setup: Setup) -> None:
    rng = random.Random(5)
    started = time.monotonic()
    setup.worker.start()
    print(f"worker ready after {time.monotonic() - started:.1f}s")
    first = _scenario(rng, datetime.now(UTC), "a", 1250)
    assert len(first.records) >= 1900
    setup.publish(first.records)
    published = time.time()
    state = _poll_state(setup, lambda s: _settled(s, first.short_lived), timeout=40)
    _assert_state_matches(setup, state, first.events, first.short_lived, first.expired)
    assert state.tombstoned, "no rule expired while stored"

    def stats_total() -> int:
        docs = _read_json(setup.bootstrap, f"{setup.log_topic}.stats")
        return sum(int(str(doc["total"])) for doc in docs)

    least, most = first.counted()
    # Every window holding a record has closed 3 s + 1 s grace after publishing, once the
    # worker has caught up (it has) and ticked.
    deadline = time.monotonic() + 20
    while (total := stats_total()) < least or time.time() < published + 5:
        assert time.monotonic() < deadline, f"stats counted {total} events, not {least}"
    assert total <= most, f"stats counted {total} events, more than {most}"
    alerts = _read_json(setup.bootstrap, f"{setup.log_topic}.alerts")
    assert {doc["kind"] for doc in alerts} >= {"subject.blocked", "global.tokens_revoked"}
    output = setup.worker.output()
    assert "ALERT:" in output
    assert output.count("bad_signature") == 5

    # kill -9 while the worker is busy with a second batch, restart, publish a third.
    second = _scenario(rng, datetime.now(UTC), "b", 1500)
    before = dict(state.markers)
    setup.publish(second.records)
    _poll_state(
        setup,
        lambda s: any(s.markers.get(p, -1) > off for p, off in before.items()),
        timeout=20,
    )
    setup.worker.kill()
    setup.worker.start()
    # Longer-lived: the restarted worker first works through the second batch.
    third = _scenario(rng, datetime.now(UTC), "c", 300, short_lived=15.0)
    setup.publish(third.records)
    every = first.events + second.events + third.events
    short = first.short_lived | second.short_lived | third.short_lived
    state = _poll_state(setup, lambda s: _settled(s, short), timeout=60)
    never = first.expired | second.expired | third.expired
    _assert_state_matches(setup, state, every, short, never)
    assert setup.worker.stop() == 0
