"""The broker is SIGKILLed while the identity service publishes and three services consume."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from consumer_sdk import (
    DataSourceState,
    Revocast,
    SourceStatus,
    StateUnavailableError,
    TokenRevokedError,
)
from producer import Publisher, PublisherSettings, ensure_topic
from revocast.localkafka import LocalKafkaBroker
from revocation_events import KafkaSettings, TokenRevoked
from tests._kafka_fixtures import wait_until
from tests.consumer_sdk._helpers import EVENT_KEY, settings, token
from tests.faults._figures import record_figures

pytestmark = [
    pytest.mark.kafka,
    # kafka-python 3.0 leaks the socket of every refused connection attempt
    # (kafka/net/inet.py: KafkaNetSocket.connect does not close it on ECONNREFUSED), and its
    # clients retry while the broker is down. Those leaks are collected in teardown below.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <socket.socket:pytest.PytestUnraisableExceptionWarning"
    ),
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]

EVENTS = 10_000
BATCH = 500
KILL_AFTER = 3_000
MAX_STALENESS = 2.0
INSTANCES = 3


class StatusLog:
    """The states a status listener saw, with consecutive repeats collapsed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: list[DataSourceState] = []

    def __call__(self, status: SourceStatus) -> None:
        with self._lock:
            if not self._states or self._states[-1] is not status.state:
                self._states.append(status.state)

    @property
    def states(self) -> list[DataSourceState]:
        with self._lock:
            return list(self._states)


def revocations(first: int, count: int, expires_at: datetime) -> list[TokenRevoked]:
    return [
        TokenRevoked(
            issuer="identity-test", jti=f"jti-{n}", sub=f"user-{n % 50}", expires_at=expires_at
        )
        for n in range(first, first + count)
    ]


@pytest.fixture(autouse=True)
def collect_leaked_sockets() -> Iterator[None]:
    """Collect kafka-python's leaked sockets here, under this module's warning filters,
    rather than in whichever test the garbage collector happens to run next."""
    yield
    gc.collect()


@pytest.fixture
def kafka(private_broker: LocalKafkaBroker) -> KafkaSettings:
    kafka = KafkaSettings(bootstrap_servers=(private_broker.bootstrap_servers,), topic="revs")
    assert ensure_topic(kafka, partitions=3, max_token_lifetime=3600).created
    return kafka


@pytest.fixture
def services(kafka: KafkaSettings) -> Iterator[list[Revocast]]:
    instances = [
        Revocast(
            settings(
                kafka=kafka,
                max_staleness=MAX_STALENESS,
                partition_check_interval=0.5,
                service_name=f"svc{i}",
            )
        )
        for i in range(INSTANCES)
    ]
    try:
        yield instances
    finally:
        for rc in instances:
            rc.close()


def state_of(rc: Revocast) -> DataSourceState:
    return rc.status_provider.current.state


def refused_as_unavailable(rc: Revocast, tok: str, early: list[float]) -> Callable[[], bool]:
    """True once verify fails closed; records in ``early`` any refusal before the bound."""

    def check() -> bool:
        status = rc.status_provider.current
        try:
            rc.verify(tok)
        except StateUnavailableError:
            if rc.clock() - status.since < MAX_STALENESS:
                early.append(rc.clock() - status.since)
            return True
        return False

    return check


def test_broker_sigkill_during_10k_publishes_loses_nothing_and_fails_closed_after_the_bound(
    private_broker: LocalKafkaBroker,
    kafka: KafkaSettings,
    services: list[Revocast],
    tmp_path: Path,
) -> None:
    for rc in services:
        assert rc.wait_until_ready(30)
    logs = [StatusLog() for _ in services]
    for rc, log in zip(services, logs, strict=True):
        rc.add_status_listener(log)
    innocent = token(jti="never-revoked", lifetime=3600)
    for rc in services:
        assert rc.verify(innocent)["jti"] == "never-revoked"

    publisher = Publisher(
        PublisherSettings(
            issuer="identity-test",
            kafka=kafka,
            signing_key=EVENT_KEY,
            outbox_path=tmp_path / "outbox.sqlite3",
            ack_timeout=0.2,
            delivery_timeout=5.0,
            max_block=1.0,
        )
    )
    published = 0
    acked = 0
    failures: list[BaseException] = []

    def publish_all() -> None:
        nonlocal published, acked
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        try:
            for first in range(0, EVENTS, BATCH):
                results = publisher.publish_many(revocations(first, BATCH, expires_at))
                acked += sum(not r.queued for r in results)
                published += BATCH
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    sender = threading.Thread(target=publish_all, name="test-publisher")
    try:
        sender.start()
        wait_until(lambda: acked >= KILL_AFTER, timeout=60, message=f"{KILL_AFTER} acks")
        private_broker.kill()
        killed_at = time.monotonic()

        wait_until(
            lambda: all(state_of(rc) is DataSourceState.INTERRUPTED for rc in services),
            timeout=30,
            message="every instance notices the dead broker",
        )
        detected_after = time.monotonic() - killed_at
        early: list[float] = []
        for rc in services:
            wait_until(
                refused_as_unavailable(rc, innocent, early),
                timeout=MAX_STALENESS + 10,
                message="verify fails closed once max_staleness has passed",
            )
        assert early == [], "refused before max_staleness had passed"

        sender.join(60)
        assert not sender.is_alive()
        assert failures == []
        assert published == EVENTS
        assert publisher.pending_count() > 0, "the outage should have queued events"

        private_broker.restart()
        assert publisher.wait_until_drained(90)
        wait_until(
            lambda: all(rc.stats()["applied"].get("token.revoked", 0) >= EVENTS for rc in services),
            timeout=120,
            message="every instance applies all revocations after the restart",
        )
    finally:
        publisher.close(timeout=5)
        sender.join(10)

    for rc, log in zip(services, logs, strict=True):
        stats = rc.stats()
        assert stats["status"] == "valid"
        assert stats["applied"] == {"token.revoked": EVENTS}, "none lost, none counted twice"
        assert stats["entries"]["jti"] == EVENTS
        assert stats["skipped"] == {}
        assert log.states[0] is DataSourceState.INTERRUPTED
        assert log.states[-1] is DataSourceState.VALID
        assert set(log.states) == {DataSourceState.INTERRUPTED, DataSourceState.VALID}
        assert rc.verify(innocent)["jti"] == "never-revoked"
        for n in (0, KILL_AFTER, EVENTS - 1):
            with pytest.raises(TokenRevokedError):
                rc.verify(token(jti=f"jti-{n}", lifetime=3600))
        record_figures(
            "broker_sigkill",
            instance=rc.settings.service_name,
            events_sent=EVENTS,
            applied=stats["applied"]["token.revoked"],
            lost=EVENTS - stats["entries"]["jti"],
            duplicates_absorbed=sum(stats["unchanged"].values()),
            reconnects=stats["reconnects"],
            detected_after_s=round(detected_after, 2),
        )
