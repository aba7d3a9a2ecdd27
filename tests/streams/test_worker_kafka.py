"""The real worker process against a real broker: state topic, markers, stats, alerts, crash."""

from __future__ import annotations

import json
import random
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumer_sdk import RevocationState
from consumer_sdk._marker import read_marker
from revocast.cli._streams import worker_argv
from revocation_events import (
    EncodedEvent,
    Event,
    MalformedEventError,
    SubjectTokensRevoked,
    TokenRevoked,
)
from streams import OFFSETS_KEY_PREFIX, rank, rule_key
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.streams._support import SIGNING_CODEC, VERIFYING_CODEC
from tests.streams._worker import (
    HOUR,
    Worker,
    app_id,
    delete_worker_topics,
    end_offsets,
    expected,
    scenario,
    worker_env,
)
from tests.streams.test_snapshot_kafka import log_id, recreate

pytestmark = pytest.mark.kafka


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
    worker = Worker(
        worker_env(kafka_bootstrap, log_topic, tmp_path / "data"), tmp_path / "worker.log"
    )
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=20, batch_size=256 * 1024, acks="all"
    )
    try:
        yield Setup(kafka_bootstrap, log_topic, worker, producer)
    finally:
        producer.close(timeout=10)
        worker.ensure_dead()
        delete_worker_topics(kafka_bootstrap, log_topic)


# -- reading the state topic ----------------------------------------------------


@dataclass
class State:
    live: dict[str, Event]
    """Per rule key, the strongest event of the live records (an SDK merges them all)."""
    tombstoned: set[str]
    """Rule keys with a tombstone and no live record."""
    written: set[str]
    """Rule keys that had a live record at some point (tombstoned ones included)."""
    markers: dict[int, int]
    ends: dict[int, int]
    """End offsets of the log, snapshotted before the state was read."""
    records: dict[tuple[int, str], tuple[bytes, list[tuple[str, bytes]]]]
    """The last live record per (state partition, key): what an SDK bootstrap applies."""


def _rule_of(state_key: str) -> str:
    """The rule key in a state record's key: ``<rule key>#<event id>``, or the rule key
    alone (written before records were keyed per event, and by ``rebuild-state``)."""
    rule, sep, _ = state_key.rpartition("#")
    return rule if sep else state_key


def _read_state(setup: Setup) -> State:
    ends = end_offsets(setup.bootstrap, setup.log_topic)
    per_partition: dict[tuple[int, str], tuple[bytes | None, list[tuple[str, bytes]]]] = {}
    written: set[str] = set()
    markers: dict[int, int] = {}
    for record in _read_to_end(setup.bootstrap, setup.state_topic):
        key = record.key.decode()
        if key.startswith(OFFSETS_KEY_PREFIX):
            marker = read_marker(record.key, record.value, setup.log_topic, record.partition)
            assert marker is not None, record
            markers[record.partition] = marker.offset
        else:
            per_partition[record.partition, key] = (record.value, list(record.headers))
            if record.value is not None:
                written.add(_rule_of(key))
    records = {
        slot: (value, headers)
        for slot, (value, headers) in per_partition.items()
        if value is not None
    }
    live: dict[str, Event] = {}
    for value, headers in records.values():
        event = VERIFYING_CODEC.decode(value, headers)
        key = rule_key(event)
        if key not in live or rank(event) > rank(live[key]):
            live[key] = event
    tombstoned = {
        _rule_of(key) for (_, key), (value, _) in per_partition.items() if value is None
    } - set(live)
    return State(live, tombstoned, written, markers, ends, records)


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


class _Markers:
    """The last offset marker of every state partition, read as the state topic grows.

    Keys only, nothing decoded, each record read once: a test waiting on markers must not
    take the cores the workers need (re-reading and verifying the whole state topic at every
    poll slowed a worker catching up on tens of thousands of records several fold)."""

    def __init__(self, bootstrap: str, log_topic: str) -> None:
        self._log_topic = log_topic
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        state_topic = f"{log_topic}.state"
        partitions = self._consumer.partitions_for_topic(state_topic) or set()
        assert partitions, f"no state topic {state_topic!r} yet"
        tps = [TopicPartition(state_topic, p) for p in partitions]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)
        self.found: dict[int, int] = {}

    def close(self) -> None:
        self._consumer.close()

    def wait(self, done: Callable[[dict[int, int]], bool], timeout: float, what: str) -> None:
        """Read on until ``done(markers)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.found):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout}s: {what}; markers {self.found}")
            for batch in self._consumer.poll(timeout_ms=200, max_records=20_000).values():
                for record in batch:
                    if record.key is not None and record.key.startswith(b"__"):
                        marker = read_marker(
                            record.key, record.value, self._log_topic, record.partition
                        )
                        if marker is not None:
                            self.found[record.partition] = marker.offset

    def wait_caught_up(self, bootstrap: str, timeout: float, what: str) -> None:
        """Until the markers cover the log as it ends now."""
        ends = end_offsets(bootstrap, self._log_topic)
        self.wait(
            lambda found: all(found.get(p, -1) >= end - 1 for p, end in ends.items() if end),
            timeout,
            what,
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
    winners = expected(scenario_events, time.time())
    missing = set(winners) - set(state.live)
    assert not missing, _explain_missing(setup, missing)
    assert set(state.live) == set(winners)
    wrong = {k for k, event in state.live.items() if event.id != winners[k].id}
    assert not wrong, f"wrong winners for {sorted(wrong)[:5]}"
    # A short-lived rule that expired before the worker saw it is never stored (under load
    # that happens); every one that was stored must end in a tombstone.
    assert short_lived & state.written <= state.tombstoned
    assert not expired & state.written


def _explain_missing(setup: Setup, missing: set[str]) -> str:
    head = f"{len(missing)} live rules missing from the state topic, e.g. {sorted(missing)[:5]}"
    try:
        return f"{head}; {_diagnose(setup, missing)}\n{setup.worker.output()[-3000:]}"
    except Exception as exc:  # the diagnosis must not hide the failure it explains
        return f"{head} (diagnosis failed: {exc!r})"


def _diagnose(setup: Setup, missing: set[str]) -> str:
    """Where the missing rules are: in the rules table's changelog or not, and the group's
    committed offsets next to the log's end offsets."""
    group = app_id(setup.log_topic)
    changelog = f"{group}-rules-changelog"
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap, enable_auto_commit=False)
    in_table: set[str] = set()
    try:
        tps = [TopicPartition(changelog, p) for p in consumer.partitions_for_topic(changelog) or ()]
        consumer.assign(tps)
        if tps:
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
            for tp, meta in admin.list_group_offsets(group)[group].items()
            if tp.topic == setup.log_topic
        }
    finally:
        admin.close()
    return (
        f"{len(in_table)} of them are in the table's changelog; committed offsets "
        f"{committed}, log ends {end_offsets(setup.bootstrap, setup.log_topic)}"
    )


def _read_json(bootstrap: str, topic: str) -> list[dict[str, object]]:
    return [json.loads(record.value) for record in _read_to_end(bootstrap, topic)]


# -- the test -------------------------------------------------------------------


def test_worker_compacts_the_log_into_state_and_survives_kill_9(setup: Setup) -> None:
    rng = random.Random(5)
    started = time.monotonic()
    setup.worker.start()
    print(f"worker ready after {time.monotonic() - started:.1f}s")
    first = scenario(rng, datetime.now(UTC), "a", 1250)
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
    second = scenario(rng, datetime.now(UTC), "b", 1500)
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
    third = scenario(rng, datetime.now(UTC), "c", 300, short_lived=15.0)
    setup.publish(third.records)
    every = first.events + second.events + third.events
    short = first.short_lived | second.short_lived | third.short_lived
    state = _poll_state(setup, lambda s: _settled(s, short), timeout=60)
    never = first.expired | second.expired | third.expired
    _assert_state_matches(setup, state, every, short, never)
    assert setup.worker.stop() == 0


# -- 10,000 events: the state topic is a log replay --------------------------------


_SDK_LIFETIME = 3000.0
"""Below the scenario's one hour, as with a producer whose max_token_lifetime is at least the
SDK's (the state topic protocol's premise: expires_at is authoritative)."""


def _log_records(setup: Setup) -> list[tuple[bytes | None, list[tuple[str, bytes]]]]:
    return [
        (record.value, list(record.headers))
        for record in _read_to_end(setup.bootstrap, setup.log_topic)
    ]


def _read_to_end(bootstrap: str, topic: str) -> Iterator[Any]:
    """Every record of ``topic`` from the beginning to its end offsets at the call, in
    partition order within each fetch."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                yield from batch
    finally:
        consumer.close()


def _sdk_state(records: list[tuple[bytes | None, list[tuple[str, bytes]]]], now: float) -> Any:
    """``RevocationState.snapshot()`` of an SDK applying ``records`` at ``now``, skipping
    what the SDK skips."""
    state = RevocationState(clock=lambda: now, max_token_lifetime=_SDK_LIFETIME)
    for value, headers in records:
        try:
            state.apply(VERIFYING_CODEC.decode(value, headers))
        except MalformedEventError:
            continue
    return state.snapshot()


def test_ten_thousand_events_state_topic_equals_a_log_replay(setup: Setup) -> None:
    """The issue's bar: 10,000 events with duplicates and expiries through the real worker;
    the state topic read to its end gives an SDK the same snapshot as replaying the log, and
    every stored rule that expired has a tombstone."""
    rng = random.Random(10_000)
    setup.worker.start()
    made = time.monotonic()
    s = scenario(rng, datetime.now(UTC), "k", 8000, short_lived=15.0, competing=True)
    assert len(s.records) >= 10_000
    assert len(s.duplicated) >= 800
    started = time.monotonic()
    setup.publish(s.records)
    print(
        f"{len(s.records)} records ({len(s.duplicated)} duplicates, {len(s.short_lived)} "
        f"expiring, {len(s.expired)} expired on arrival) signed in {started - made:.1f}s, "
        f"published in {time.monotonic() - started:.1f}s"
    )
    state = _poll_state(setup, lambda st: _settled(st, s.short_lived), timeout=60)
    print(f"state settled {time.monotonic() - started:.1f}s after publishing began")
    _assert_state_matches(setup, state, s.events, s.short_lived, s.expired)
    tombstoned = s.short_lived & state.tombstoned
    assert len(tombstoned) >= len(s.short_lived) // 2, "few expiring rules were stored"
    now = time.time()
    from_log = _sdk_state(_log_records(setup), now)
    from_state = _sdk_state(list(state.records.values()), now)
    assert from_state == from_log
    jtis, sids, subjects, kids, global_ = from_log
    assert len(jtis) >= 8000
    assert len(sids) >= 400
    assert len(subjects) == 40
    assert kids
    assert global_
    assert setup.worker.stop() == 0


# -- kill -9 again and again: no gap behind any marker --------------------------------


def _log_by_partition(
    setup: Setup,
) -> dict[int, list[tuple[int, bytes | None, list[tuple[str, bytes]]]]]:
    consumer = KafkaConsumer(bootstrap_servers=setup.bootstrap, enable_auto_commit=False)
    found: dict[int, list[tuple[int, bytes | None, list[tuple[str, bytes]]]]] = {}
    try:
        tps = [
            TopicPartition(setup.log_topic, p)
            for p in consumer.partitions_for_topic(setup.log_topic) or ()
        ]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=500, max_records=5000).items():
                found.setdefault(tp.partition, []).extend(
                    (r.offset, r.value, list(r.headers)) for r in batch
                )
    finally:
        consumer.close()
    return found


def _assert_no_gap(setup: Setup, when: str) -> State:
    """An SDK bootstrapping now, from the state topic (only the last record per key, as
    after compaction) and then the log after each partition's last marker, has the same
    state as one replaying the whole log."""
    state = _read_state(setup)
    log = _log_by_partition(setup)
    after_markers = [
        (value, headers)
        for p, records in log.items()
        for offset, value, headers in records
        if offset > state.markers.get(p, -1)
    ]
    every = [(value, headers) for records in log.values() for _, value, headers in records]
    now = time.time()
    from_state = _sdk_state(list(state.records.values()) + after_markers, now)
    assert from_state == _sdk_state(every, now), (
        f"{when}: a gap behind the markers {state.markers} (log ends {state.ends})\n"
        f"{setup.worker.output()[-3000:]}"
    )
    return state


def _moved_by(before: dict[int, int], records: int) -> Callable[[State], bool]:
    """Markers have covered at least ``records`` more log records in all (and moved)."""

    def moved(s: State) -> bool:
        gains = [s.markers[p] - before.get(p, -1) for p in s.markers]
        return any(g > 0 for g in gains) and sum(max(g, 0) for g in gains) >= records

    return moved


def test_no_gap_behind_any_marker_after_repeated_kill_9(setup: Setup) -> None:
    """kill -9 the worker mid-burst three times: right after each kill, and after the last
    restart has caught up, what an SDK bootstraps from the state topic equals a log replay.
    A marker written before its effects were acknowledged, or a restart that trusts a
    committed offset ahead of writes the crash lost, shows up here as a revocation missing."""
    rng = random.Random(99)
    setup.worker.start()
    events: list[Event] = []
    for round_ in range(3):
        burst = scenario(rng, datetime.now(UTC), f"r{round_}", 1200, short_lived=600.0)
        events += burst.events
        before = _read_state(setup).markers
        setup.publish(burst.records)
        # Kill while the burst is in flight: once the markers have covered a random part of it.
        _poll_state(setup, _moved_by(before, rng.randint(1, 600)), timeout=30)
        setup.worker.kill()
        after = _assert_no_gap(setup, f"right after kill {round_ + 1}").markers
        print(f"kill {round_ + 1}: markers {before} -> {after}")
        setup.worker.start()
    state = _poll_state(setup, _caught_up, timeout=60)
    _assert_no_gap(setup, "after the last restart caught up")
    winners = expected(events, time.time())
    missing = set(winners) - set(state.live)
    assert not missing, _explain_missing(setup, missing)
    assert "was expected; its offset marker" not in setup.worker.output()
    assert setup.worker.stop() == 0


# -- SDK leeway: a rule just past its expires_at is still in the state topic -----------


def test_a_rule_within_the_sdk_leeway_past_its_expiry_stays_in_the_state_topic(
    setup: Setup, tmp_path: Path
) -> None:
    """An SDK with a leeway still refuses a revoked token ``leeway`` seconds past its
    ``exp``; one bootstrapping from the state topic then must find the revocation, since
    the marker makes it skip the log record. By default the worker keeps rules the
    largest leeway an SDK accepts past their expiry (no tombstone, late events accepted)."""
    env = worker_env(setup.bootstrap, setup.log_topic, tmp_path / "margin-data")
    del env["REVOCAST_STREAMS_EXPIRY_MARGIN_SECONDS"]  # the default
    worker = Worker(env, tmp_path / "margin-worker.log")
    try:
        worker.start()
        now = datetime.now(UTC)
        setup.publish(
            [
                SIGNING_CODEC.encode(
                    TokenRevoked(
                        issuer="t", jti="in-leeway", expires_at=now - timedelta(seconds=30)
                    )
                ),
                SIGNING_CODEC.encode(
                    TokenRevoked(issuer="t", jti="long-gone", expires_at=now - timedelta(hours=1))
                ),
            ]
        )
        state = _poll_state(setup, _caught_up, timeout=30)
        assert "jti:in-leeway" in state.live
        assert "jti:long-gone" not in state.written
        assert worker.stop() == 0
    finally:
        worker.ensure_dead()


# -- a worker whose table is new is seeded from the state topic ------------------------------


def test_a_worker_with_a_new_app_id_keeps_the_winners_the_state_topic_holds(
    setup: Setup, tmp_path: Path
) -> None:
    """A second app id starts with an empty rules table but resumes after the shared state
    topic's marker. Judged against an empty table, a weaker watermark read after the marker
    replaced the stronger one in the state topic, and an SDK bootstrapping from the state
    topic then accepted tokens the log revokes."""
    now = datetime.now(UTC).replace(microsecond=0)
    strong = SubjectTokensRevoked(
        issuer="t", sub="u", issued_before=now, expires_at=now + timedelta(hours=1)
    )
    weaker = SubjectTokensRevoked(
        issuer="t",
        sub="u",
        issued_before=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=1),
    )
    setup.worker.start()
    setup.publish([SIGNING_CODEC.encode(strong)])
    _poll_state(setup, _caught_up, timeout=30)
    assert setup.worker.stop() == 0

    other = f"{app_id(setup.log_topic)}-new"
    env = worker_env(setup.bootstrap, setup.log_topic, tmp_path / "new-data")
    env["REVOCAST_STREAMS_APP_ID"] = other
    worker = Worker(env, tmp_path / "new-worker.log")
    try:
        worker.start()
        setup.publish([SIGNING_CODEC.encode(weaker)])
        state = _poll_state(setup, _caught_up, timeout=30)
        assert state.live["sub-wm:u"].id == strong.id, worker.output()[-3000:]
        assert worker.output().count("seeding it with 1 state records") == 1
        assert worker.stop() == 0
        # Restarted, its table is in step with the state topic's marker: no seeding.
        worker.start()
        setup.publish([SIGNING_CODEC.encode(weaker)])
        state = _poll_state(setup, _caught_up, timeout=30)
        assert state.live["sub-wm:u"].id == strong.id
        assert worker.stop() == 0
        assert worker.output().count("seeding it with") == 1, worker.output()[-3000:]
    finally:
        worker.ensure_dead()
        delete_worker_topics(setup.bootstrap, setup.log_topic, other)


# -- a user mistake is one line, not a traceback ------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [("REVOCAST_EVENT_KEYS", "nonsense"), ("REVOCAST_STREAMS_TICK_SECONDS", "soon")],
)
def test_a_bad_environment_value_stops_the_worker_with_one_line(
    kafka_bootstrap: str, tmp_path: Path, variable: str, value: str
) -> None:
    env = worker_env(kafka_bootstrap, "unused-log", tmp_path / "data")
    env[variable] = value
    assert variable in _one_line_failure(env)


def test_topics_the_cluster_refuses_to_create_stop_the_worker_with_the_brokers_reason(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    """A replication factor above the broker count used to surface 15 s later as
    'Topics not ready: UnknownTopicOrPartitionError', the broker's reason dropped."""
    log_topic = make_topic(partitions=1)
    env = worker_env(kafka_bootstrap, log_topic, tmp_path / "data")
    env["REVOCAST_STREAMS_REPLICATION_FACTOR"] = "7"
    try:
        output = _one_line_failure(env)
    finally:
        delete_worker_topics(kafka_bootstrap, log_topic)
    assert "replication factor of 7" in output, output


@pytest.mark.parametrize("policy", ["delete", "compact,delete"])
def test_a_state_topic_that_is_not_compact_only_stops_the_worker(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path, policy: str
) -> None:
    """A state topic created beforehand (by infrastructure code, say) with time retention
    would delete the records of blocks and revoked keys, which never expire, while the
    markers written every tick still promise them to bootstrapping SDKs."""
    log_topic = make_topic(partitions=1)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics(
            {
                f"{log_topic}.state": {
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {"cleanup.policy": policy},
                }
            }
        )
    finally:
        admin.close()
    env = worker_env(kafka_bootstrap, log_topic, tmp_path / "data")
    try:
        output = _one_line_failure(env)
    finally:
        delete_worker_topics(kafka_bootstrap, log_topic)
    assert f"cleanup.policy={policy}" in output, output


def _one_line_failure(env: dict[str, str]) -> str:
    """Run the worker, which must stop with a non-zero status and no traceback; its output."""
    done = subprocess.run(worker_argv([]), env=env, capture_output=True, timeout=120)
    assert done.returncode != 0
    output = (done.stdout + done.stderr).decode()
    assert "Traceback" not in output, output
    return output


# -- the log deleted and recreated under the same name ---------------------------------------


def _marker_ids(setup: Setup) -> dict[int, str | None]:
    """The log topic id the last marker of each state partition names."""
    found: dict[int, str | None] = {}
    for record in _read_to_end(setup.bootstrap, setup.state_topic):
        if record.key.decode().startswith(OFFSETS_KEY_PREFIX):
            marker = read_marker(record.key, record.value, setup.log_topic, record.partition)
            assert marker is not None, record
            found[record.partition] = None if marker.topic_id is None else str(marker.topic_id)
    return found


def _gone(bootstrap: str, topic: str) -> Callable[[], bool]:
    def check() -> bool:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
        try:
            return topic not in admin.list_topics()
        finally:
            admin.close()

    return check


def test_a_worker_restarted_on_a_recreated_log_re_reads_it_and_never_vouches_for_the_old_state(
    setup: Setup,
) -> None:
    """The log deleted and recreated under the same name, its state topic and the worker's
    rules changelog left. The worker took its table (recovered from the changelog) as in step
    with the state topic's last marker and resumed the new log after that marker's offset:
    the new log's rules up to there never reached the state topic, and its next markers
    vouched for them anyway, and for the old log's rules."""
    rng = random.Random(31)
    setup.worker.start()
    old = scenario(rng, datetime.now(UTC), "old", 300, short_lived=1800)
    setup.publish(old.records)
    old_markers = _poll_state(setup, _caught_up, timeout=60).markers
    assert setup.worker.stop() == 0
    old_id = log_id(setup.bootstrap, setup.log_topic)
    assert set(_marker_ids(setup).values()) == {str(old_id)}

    recreate(setup.bootstrap, setup.log_topic)
    new_id = log_id(setup.bootstrap, setup.log_topic)
    new = scenario(rng, datetime.now(UTC), "new", 1500, short_lived=1800)
    setup.publish(new.records)
    ends = end_offsets(setup.bootstrap, setup.log_topic)
    assert all(ends[p] > marker + 1 for p, marker in old_markers.items())
    setup.worker.start()
    winners = expected(new.events, time.time())

    def re_derived(state: State) -> bool:
        return all(k in state.live and state.live[k].id == w.id for k, w in winners.items())

    state = _poll_state(setup, re_derived, timeout=60)
    assert state.markers == old_markers, "a marker vouched for the old log's rules"
    assert setup.worker.output().count("holds the rules of a deleted incarnation") == 3

    # The remedy the worker logs: delete the state topic and restart it.
    assert setup.worker.stop() == 0
    admin = KafkaAdminClient(bootstrap_servers=setup.bootstrap, client_id="revocast-tests")
    try:
        admin.delete_topics([setup.state_topic], timeout_ms=30_000)
    finally:
        admin.close()
    wait_until(_gone(setup.bootstrap, setup.state_topic), timeout=60, message="state deleted")
    setup.worker.start()
    state = _poll_state(setup, _caught_up, timeout=60)
    assert set(state.live) == set(winners), "only the new log's rules"
    assert all(state.live[k].id == w.id for k, w in winners.items())
    assert set(_marker_ids(setup).values()) == {str(new_id)}


# -- a zombie: a paused worker resumes after another one took its partition over ---------------


_ZOMBIE_SUBJECTS = 8_000
"""Two watermarks each. Enough that A, paused at its first marker, is still mid-burst with
records fetched and sends queued (it works through about 2,000 records a second here, three
writes each); 24,000 took the workers ~90 s to get through on two cores."""


def test_a_paused_worker_resumed_after_a_takeover_does_not_shadow_the_new_owners_rules(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    """faust has no fencing. Worker A owns the log partition and is SIGSTOPped in the middle
    of a burst of weak watermarks, one per subject; stronger ones for every subject follow.
    Worker B takes the partition over, writes the strong rules and a marker past them. A
    resumes: until its consumer learns it was evicted it still processes what it had fetched
    and sends what it had queued, so weak records of those subjects land after B's strong
    ones. Keyed by rule, they replaced B's records under compaction (hundreds to thousands
    of subjects per run), and once B's marker moved on, an SDK bootstrapping from the
    compacted state topic (the last record per key) and the log after that marker had lost
    the strong rules. Keyed by event, a late record is one more genuine event."""
    log_topic = make_topic(partitions=1)
    producer = KafkaProducer(
        bootstrap_servers=kafka_bootstrap, linger_ms=20, batch_size=256 * 1024, acks="all"
    )
    a = Worker(worker_env(kafka_bootstrap, log_topic, tmp_path / "a"), tmp_path / "a.log")
    b = Worker(worker_env(kafka_bootstrap, log_topic, tmp_path / "b"), tmp_path / "b.log")
    setup = Setup(kafka_bootstrap, log_topic, a, producer)
    now = datetime.now(UTC).replace(microsecond=0)
    subjects = [f"z{n}" for n in range(_ZOMBIE_SUBJECTS)]

    def watermarks(issued_before: datetime) -> list[EncodedEvent]:
        return [
            SIGNING_CODEC.encode(
                SubjectTokensRevoked(
                    issuer="t", sub=sub, issued_before=issued_before, expires_at=now + HOUR
                )
            )
            for sub in subjects
        ]

    weak, strong = watermarks(now - HOUR), watermarks(now)
    watch: _Markers | None = None
    try:
        a.start()
        watch = _Markers(kafka_bootstrap, log_topic)
        setup.publish(weak)
        # Pause A once it has covered part of the burst: the rest is in its buffers.
        watch.wait(lambda found: found.get(0, -1) >= 199, 60, "A's first markers")
        a.pause()
        assert watch.found[0] < len(weak) - 1, "A finished the burst first"
        setup.publish(strong)
        b.start()  # joins once A's session has expired
        watch.wait_caught_up(kafka_bootstrap, 90, "B to catch up")
        _assert_no_gap(setup, "B caught up, A still paused")
        before = end_offsets(kafka_bootstrap, setup.state_topic)[0]
        seen = len(a.output())
        a.resume()
        # Rejoining, A has stopped processing: what it wrote late is in the state topic.
        wait_until(
            lambda: "Joined group" in a.output()[seen:],
            timeout=30,
            message="A to rejoin the group",
        )
        # The log moves on: the owner's next marker lands after whatever A wrote late.
        after = TokenRevoked(issuer="t", jti="after", expires_at=now + HOUR)
        setup.publish([SIGNING_CODEC.encode(after)])
        watch.wait_caught_up(kafka_bootstrap, 60, "the owner to mark past the last record")
        state = _read_state(setup)
        assert _caught_up(state), state.markers
        late = 0  # weak watermarks that landed after A resumed: what this test is about
        for record in _read_to_end(kafka_bootstrap, setup.state_topic):
            if record.offset < before or record.value is None or record.key.startswith(b"__"):
                continue
            event = VERIFYING_CODEC.decode(record.value, list(record.headers))
            late += isinstance(event, SubjectTokensRevoked) and event.issued_before < now
        if not late:  # its flow stopped before it processed or sent anything: a race
            pytest.skip("A wrote no weak watermark after it resumed: nothing to judge")
        held: dict[str, datetime] = {}
        for value, headers in state.records.values():
            event = VERIFYING_CODEC.decode(value, headers)
            if isinstance(event, SubjectTokensRevoked):
                held[event.sub] = max(event.issued_before, held.get(event.sub, event.issued_before))
        lost = [sub for sub in subjects if held.get(sub) != now]
        assert not lost, (
            f"{len(lost)} strong watermarks behind marker {state.markers[0]} are shadowed by "
            f"the {late} weak records written after A resumed, "
            f"e.g. {lost[:3]}"
        )
        _assert_no_gap(setup, "after A resumed and the owner marked again")
    finally:
        if watch is not None:
            watch.close()
        producer.close(timeout=10)
        a.ensure_dead()
        b.ensure_dead()
        delete_worker_topics(kafka_bootstrap, log_topic)
