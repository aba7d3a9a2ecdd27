"""REVOCAST_STATE_TOPIC and REVOCAST_SNAPSHOT_TOPIC, given once to the real worker and to SDKs:
the worker writes its state and snapshots there, and SDKs bootstrap from them.

The worker used to derive both names from the log's and ignore the variables, so SDKs told
them read topics nobody wrote and fell back to replaying the log.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from consumer_sdk import ConsumerSettings, Revocast
from consumer_sdk._marker import last_markers
from consumer_sdk._snapshot_reader import read_snapshots
from revocation_events import EventVerifier, SigningKey, public_key_spec
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import FakeClock
from tests.streams._support import KEY_SPEC
from tests.streams._worker import Worker, delete_worker_topics, end_offsets, publish, scenario
from tests.streams._worker import worker_env as fast_worker_env

pytestmark = pytest.mark.kafka

_LIFETIME = 600.0
_NO_EXPIRY = 1800.0  # short-lived rules outlive the test (see test_state_bootstrap_kafka)
_SNAPSHOT_KEY = SigningKey.hmac("snap-overrides", b"v" * 32)
_PARTITIONS = 2


def _covered(
    bootstrap: str, log: str, state: str, snapshots: str, ends: dict[int, int]
) -> Callable[[], bool]:
    """Whether the markers in ``state`` and the snapshots in ``snapshots`` cover ``ends``."""

    def check() -> bool:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        try:
            if not consumer.partitions_for_topic(snapshots):  # the snapshotter makes it
                return False
            tps = [TopicPartition(state, p) for p in range(_PARTITIONS)]
            found = last_markers(
                consumer,
                tps,
                consumer.end_offsets(tps, timeout_ms=10_000),
                log,
                stop=lambda: False,
                poll_timeout_ms=200,
                request_timeout_ms=10_000,
            )
            read = read_snapshots(
                consumer,
                snapshots,
                log,
                range(_PARTITIONS),
                EventVerifier([_SNAPSHOT_KEY.verification_key()]),
                bounds=None,
                topic_id=None,
                lifetime=_LIFETIME,
                timeout_ms=10_000,
                poll_timeout_ms=200,
                stop=threading.Event(),
            )
        finally:
            consumer.close()
        return all(
            p in found
            and found[p].offset >= end - 1
            and p in read.accepted
            and read.accepted[p][0].offset >= end - 1
            for p, end in ends.items()
        )

    return check


def _topics(bootstrap: str) -> set[str]:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="revocast-tests")
    try:
        return set(admin.list_topics())
    finally:
        admin.close()


def test_a_worker_and_sdks_given_the_same_topic_names_meet_on_those_topics(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    log = make_topic(partitions=_PARTITIONS)
    state, snapshots = f"{log}-acme-state", f"{log}-acme-snapshots"
    # What one deployment sets for every component.
    shared = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "REVOCAST_TOPIC": log,
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_MAX_TOKEN_LIFETIME": str(_LIFETIME),
        "REVOCAST_STATE_TOPIC": state,
        "REVOCAST_SNAPSHOT_TOPIC": snapshots,
    }
    worker = Worker(
        {
            **fast_worker_env(kafka_bootstrap, log, tmp_path / "data"),
            **shared,
            "REVOCAST_SNAPSHOT_SIGNING_KEY": public_key_spec(_SNAPSHOT_KEY),
            "REVOCAST_STREAMS_SNAPSHOT_INTERVAL_SECONDS": "0.5",
        },
        tmp_path / "worker.log",
    )
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    try:
        published = scenario(random.Random(11), datetime.now(UTC), "ovr", 80, _NO_EXPIRY)
        publish(producer, log, published.records)
        ends = end_offsets(kafka_bootstrap, log)
        worker.start()
        # Made at start-up, before the worker is ready.
        assert _topics(kafka_bootstrap) & {state, f"{log}.state"} == {state}
        wait_until(
            _covered(kafka_bootstrap, log, state, snapshots, ends),
            timeout=60,
            message=f"markers in {state} and snapshots in {snapshots} covering the log",
        )
        assert {f"{log}.state", f"{log}.snapshots"}.isdisjoint(_topics(kafka_bootstrap))

        sdk_env = {
            **shared,
            "REVOCAST_ALGORITHMS": "HS256",
            "REVOCAST_JWT_KEY": "k" * 32,
            "REVOCAST_HEARTBEAT_INTERVAL": "0",
        }
        clock = FakeClock()

        def sdk(**extra: str) -> Revocast:
            return Revocast(ConsumerSettings.from_env(environ={**sdk_env, **extra}), clock=clock)

        trusted = public_key_spec(_SNAPSHOT_KEY)
        with (
            sdk(REVOCAST_BOOTSTRAP="log") as from_log,
            sdk(REVOCAST_BOOTSTRAP="state") as from_state,
            sdk(REVOCAST_BOOTSTRAP="state", REVOCAST_SNAPSHOT_KEYS=trusted) as from_snapshots,
        ):
            for rc in (from_log, from_state, from_snapshots):
                assert rc.wait_until_ready(30)
            boot = from_state.stats()["bootstrap"]
            assert (boot["mode"], boot["state_topic"]) == ("state", state)
            assert boot["log_replay_partitions"] == []
            boot = from_snapshots.stats()["bootstrap"]
            assert (boot["mode"], boot["snapshot"]["topic"]) == ("snapshot", snapshots)
            assert sorted(boot["snapshot"]["offsets"]) == list(range(_PARTITIONS))
            expected = from_log.state.snapshot()
            assert from_state.state.snapshot() == expected
            assert from_snapshots.state.snapshot() == expected
    finally:
        producer.close(timeout=10)
        worker.ensure_dead()
        delete_worker_topics(kafka_bootstrap, log)
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
        try:
            admin.delete_topics(
                [state, snapshots, f"{log}.snapshots"], timeout_ms=30_000, raise_errors=False
            )
        finally:
            admin.close()
