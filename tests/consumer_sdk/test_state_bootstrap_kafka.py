"""Bootstrapping from the compacted state topic against a real broker and a real worker."""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pytest
from kafka import KafkaAdminClient, KafkaProducer

from consumer_sdk import ConsumerSettings, Revocast
from consumer_sdk._state_topic import state_topic as resolved_state_topic
from revocation_events import KafkaSettings, SettingsError, TokenRevoked
from tests._kafka_fixtures import MakeTopic, create_topic, wait_until
from tests.consumer_sdk._helpers import FakeClock, settings
from tests.streams._support import KEY, SIGNING_CODEC
from tests.streams._worker import (
    Worker,
    delete_worker_topics,
    end_offsets,
    markers,
    publish,
    running_worker,
    scenario,
    wait_for_state,
    worker_env,
)
from tests.streams.test_snapshot_kafka import log_id, recreate

# Shorter than the scenarios' hour of expiry, so every rule's deadline is its expires_at in
# both modes (the SDK extends a deadline to occurred_at + max_token_lifetime).
_LIFETIME = 600.0
# "Short-lived" rules that outlive the test: an expiry between the two SDKs' reads would
# make the comparison depend on timing.
_NO_EXPIRY = 1800.0


@dataclass
class Logged:
    """A log topic with a worker keeping its state topic."""

    bootstrap: str
    topic: str
    producer: KafkaProducer


@pytest.fixture(scope="module")
def logged(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    topic = create_topic(kafka_bootstrap, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        with running_worker(kafka_bootstrap, topic, tmp_path_factory.mktemp("worker")):
            yield Logged(kafka_bootstrap, topic, producer)
    finally:
        producer.close(timeout=10)
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
        try:
            admin.delete_topics([topic], timeout_ms=30_000)
        finally:
            admin.close()


def client(
    bootstrap: str, topic: str, mode: Literal["log", "state"], clock: FakeClock, **extra: Any
) -> Revocast:
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
    return Revocast(
        settings(
            kafka=kafka,
            bootstrap=mode,
            event_keys=(KEY.verification_key(),),
            max_token_lifetime=_LIFETIME,
            **extra,
        ),
        clock=clock,
    )


def caught_up(rc: Revocast, ends: dict[int, int]) -> bool:
    positions = rc.stats()["positions"]
    return all(positions.get(p, 0) >= end for p, end in ends.items())


@pytest.mark.kafka
def test_state_bootstrap_gives_the_same_state_as_log_replay(logged: Logged) -> None:
    rng = random.Random(7)
    published = scenario(rng, datetime.now(UTC), "same", 1000, short_lived=_NO_EXPIRY)
    publish(logged.producer, logged.topic, published.records)
    wait_for_state(logged.bootstrap, logged.topic, timeout=60)
    clock = FakeClock()
    with (
        client(logged.bootstrap, logged.topic, "log", clock) as from_log,
        client(logged.bootstrap, logged.topic, "state", clock) as from_state,
    ):
        assert from_log.wait_until_ready(60)
        assert from_state.wait_until_ready(60)
        assert from_state.state.snapshot() == from_log.state.snapshot()
        boot = from_state.stats()["bootstrap"]
        assert boot["mode"] == "state"
        assert sorted(boot["markers"]) == [0, 1, 2]
        assert boot["log_replay_partitions"] == []
        # Forged records never reach the state topic; the log replay meets all five.
        assert sum(from_log.stats()["skipped"].values()) >= 5
        assert from_state.stats()["skipped"] == {}
        # The markers cover the whole log: nothing of it was read again.
        seen = from_state.stats()
        assert sum(sum(seen[k].values()) for k in ("applied", "unchanged")) == boot["state_records"]


@pytest.mark.kafka
def test_state_bootstrap_while_events_keep_arriving_misses_none(logged: Logged) -> None:
    rng = random.Random(8)
    batches = [
        scenario(rng, datetime.now(UTC), f"busy{n}", 300, short_lived=_NO_EXPIRY) for n in range(6)
    ]
    first_sent = threading.Event()
    failure: list[BaseException] = []

    def keep_publishing() -> None:
        try:
            for batch in batches:
                publish(logged.producer, logged.topic, batch.records)
                first_sent.set()
        except BaseException as exc:  # reported by the test thread
            failure.append(exc)
            first_sent.set()

    publisher = threading.Thread(target=keep_publishing, name="publisher")
    clock = FakeClock()
    publisher.start()
    try:
        assert first_sent.wait(30)
        with client(logged.bootstrap, logged.topic, "state", clock) as from_state:
            assert from_state.wait_until_ready(60)
            publisher.join(60)
            assert not failure, failure
            ends = end_offsets(logged.bootstrap, logged.topic)
            with client(logged.bootstrap, logged.topic, "log", clock) as from_log:
                assert from_log.wait_until_ready(60)
                wait_until(lambda: caught_up(from_state, ends), timeout=30, message="tailed")
                assert from_state.stats()["bootstrap"]["mode"] == "state"
                assert from_state.state.snapshot() == from_log.state.snapshot()
    finally:
        publisher.join(60)


@pytest.mark.kafka
@pytest.mark.parametrize("state_partitions", [None, 2], ids=["absent", "other-partition-count"])
def test_unusable_state_topic_falls_back_to_log_replay_with_a_warning(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    caplog: pytest.LogCaptureFixture,
    state_partitions: int | None,
) -> None:
    topic = make_topic(partitions=3)
    state_topic = make_topic(partitions=state_partitions) if state_partitions else f"{topic}.state"
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        publish(producer, topic, scenario(random.Random(9), datetime.now(UTC), "fb", 200).records)
    finally:
        producer.close(timeout=10)
    clock = FakeClock()
    with (
        caplog.at_level(logging.WARNING, logger="consumer_sdk"),
        client(kafka_bootstrap, topic, "log", clock) as from_log,
        client(kafka_bootstrap, topic, "state", clock, state_topic=state_topic) as from_state,
    ):
        assert from_log.wait_until_ready(30)
        assert from_state.wait_until_ready(30)
        assert from_state.stats()["bootstrap"]["mode"] == "log"
        assert from_state.state.snapshot() == from_log.state.snapshot()
    assert f"state topic {state_topic!r}" in caplog.text
    assert "bootstrapping from the log" in caplog.text


@pytest.mark.kafka
def test_partition_without_a_usable_marker_is_replayed_from_the_log(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic(partitions=2)
    state_topic = make_topic(partitions=2, cleanup_policy="compact")
    hour = datetime.now(UTC) + timedelta(hours=1)
    only_in_state = SIGNING_CODEC.encode(
        TokenRevoked(issuer="t", jti="only-in-state", expires_at=hour)
    )
    in_log = [
        SIGNING_CODEC.encode(TokenRevoked(issuer="t", jti=f"log{n}", expires_at=hour))
        for n in range(2)
    ]
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        for partition, record in enumerate(in_log):
            producer.send(
                topic, value=record.value, headers=list(record.headers), partition=partition
            )
        producer.send(
            state_topic,
            key=b"jti:only-in-state",
            value=only_in_state.value,
            headers=list(only_in_state.headers),
            partition=0,
        )
        # Partition 0's marker lies beyond the log's end; partition 1 has none.
        beyond = {
            "topic": topic,
            "topic_id": str(log_id(kafka_bootstrap, topic)),
            "partition": 0,
            "offset": 1_000,
        }
        producer.send(
            state_topic, key=b"__offsets__:0", value=json.dumps(beyond).encode(), partition=0
        )
        producer.flush(30)
    finally:
        producer.close(timeout=10)
    with client(
        kafka_bootstrap, topic, "state", FakeClock(), state_topic=state_topic
    ) as from_state:
        assert from_state.wait_until_ready(30)
        stats = from_state.stats()
        assert stats["bootstrap"]["mode"] == "state"
        assert stats["bootstrap"]["log_replay_partitions"] == [0, 1]
        assert stats["applied"] == {"token.revoked": 3}


_ENV = {"REVOCAST_ALGORITHMS": "HS256", "REVOCAST_JWT_KEY": "k" * 32}


def test_bootstrap_mode_and_state_topic_come_from_the_environment() -> None:
    env = {**_ENV, "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true", "REVOCAST_TOPIC": "revs"}
    default = ConsumerSettings.from_env(environ=env)
    assert (default.bootstrap, resolved_state_topic(default)) == ("log", "revs.state")
    chosen = ConsumerSettings.from_env(
        environ={**env, "REVOCAST_BOOTSTRAP": "state", "REVOCAST_STATE_TOPIC": "snap"}
    )
    assert (chosen.bootstrap, resolved_state_topic(chosen)) == ("state", "snap")


def test_unknown_bootstrap_mode_is_refused_naming_the_variable() -> None:
    env = {**_ENV, "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true", "REVOCAST_BOOTSTRAP": "snapshot"}
    with pytest.raises(
        SettingsError, match="REVOCAST_BOOTSTRAP must be 'log' or 'state', got 'snapshot'"
    ):
        ConsumerSettings.from_env(environ=env)


@pytest.mark.kafka
def test_a_state_topic_left_by_a_deleted_log_is_not_used_for_the_recreated_one(
    kafka_bootstrap: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator deletes and recreates the log and leaves ``<log>.state``; the new log
    grows past the old markers. SDKs resumed the new log after them (skipping its records up
    to there: revocations missed) and loaded the old log's rules."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    worker = Worker(worker_env(kafka_bootstrap, topic, tmp_path / "data"), tmp_path / "w.log")
    rng = random.Random(11)
    try:
        worker.start()
        old = scenario(rng, datetime.now(UTC), "old", 300, short_lived=_NO_EXPIRY)
        publish(producer, topic, old.records)
        wait_for_state(kafka_bootstrap, topic, timeout=60)
        worker.ensure_dead()
        old_markers = markers(kafka_bootstrap, topic)
        old_id = log_id(kafka_bootstrap, topic)
        recreate(kafka_bootstrap, topic)
        assert log_id(kafka_bootstrap, topic) not in (None, old_id)
        new = scenario(rng, datetime.now(UTC), "new", 1500, short_lived=_NO_EXPIRY)
        publish(producer, topic, new.records)
        ends = end_offsets(kafka_bootstrap, topic)
        assert all(ends[p] > marker + 1 for p, marker in old_markers.items())
        clock = FakeClock()
        with (
            caplog.at_level(logging.WARNING, logger="consumer_sdk"),
            client(kafka_bootstrap, topic, "log", clock) as from_log,
            client(kafka_bootstrap, topic, "state", clock) as from_state,
        ):
            assert from_log.wait_until_ready(60)
            assert from_state.wait_until_ready(60)
            assert from_state.state.snapshot() == from_log.state.snapshot()
            boot = from_state.stats()["bootstrap"]
            assert boot["state_records"] == 0, "the deleted log's rules were read"
            assert set(boot["partitions"].values()) == {"log"}
            assert boot["state_refused"] == {"other_incarnation": 3}
        assert "state topic marker of log partition 0 refused (other_incarnation)" in caplog.text
    finally:
        worker.ensure_dead()
        producer.close(timeout=10)
        delete_worker_topics(kafka_bootstrap, topic)
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
        try:
            admin.delete_topics([topic], timeout_ms=30_000)
        finally:
            admin.close()
