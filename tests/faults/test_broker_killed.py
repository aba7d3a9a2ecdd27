"""The broker is SIGKILLed while the identity service publishes and three services consume."""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from kafka.producer.sender import Sender

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
"""The broker is killed once Kafka has acknowledged at least this many events."""
HOLD_AT = 5_000
"""The publisher waits here until the broker is dead, so the events from here on are always
published during the outage, however fast or slow the box is."""
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


def refused_as_unavailable(
    rc: Revocast, tok: str, early: list[float], late: list[float]
) -> Callable[[], bool]:
    """True once verify fails closed. Checks the bound both ways on every call: a refusal
    while the interruption is younger than ``max_staleness`` goes to ``early``, an acceptance
    once it is older goes to ``late``.

    Each age is read on the side of the call that cannot make it wrong: a refusal's age after
    the call (later than the SDK's own reading, so never too small), an acceptance's before it
    (earlier, so never too large). An INTERRUPTED source that fails again keeps its ``since``,
    so the status read before the call is the one the SDK uses.
    """

    def check() -> bool:
        status = rc.status_provider.current
        if status.state is not DataSourceState.INTERRUPTED:
            raise AssertionError(f"{rc.settings.service_name} left INTERRUPTED: {status}")
        age_before = rc.clock() - status.since
        try:
            rc.verify(tok)
        except StateUnavailableError:
            age_after = rc.clock() - status.since
            if age_after < MAX_STALENESS:
                early.append(age_after)
            return True
        if age_before > MAX_STALENESS:
            late.append(age_before)
        return False

    return check


def converged(rc: Revocast, log: StatusLog) -> bool:
    """All revocations applied, the status VALID, and the listener told so.

    The sync thread counts a record as applied before it compares its positions with the end
    offsets and reports VALID, and the status provider calls listeners after it has published
    the new status: reading the three separately, a busy box can show ``applied == EVENTS``
    with the status still INTERRUPTED, or ``status == valid`` with the listener not yet called.
    """
    return (
        rc.stats()["applied"].get("token.revoked", 0) >= EVENTS
        and state_of(rc) is DataSourceState.VALID
        and bool(log.states)
        and log.states[-1] is DataSourceState.VALID
    )


def producer_threads() -> set[threading.Thread]:
    """kafka-python producer network threads alive now, except the SDKs' heartbeat producers."""
    return {
        t
        for t in threading.enumerate()
        if isinstance(t, Sender) and t.is_alive() and "-heartbeat-" not in t.name
    }


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

    threads_before = producer_threads()
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
    failures: list[BaseException] = []
    broker_dead = threading.Event()

    def publish_all() -> None:
        nonlocal published
        expires_at = datetime.now(UTC) + timedelta(hours=1)
        try:
            for first in range(0, EVENTS, BATCH):
                if first == HOLD_AT and not broker_dead.wait(180):
                    raise TimeoutError("the broker was not killed")
                publisher.publish_many(revocations(first, BATCH, expires_at))
                published += BATCH
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    def acknowledged() -> int:
        """A lower bound of the events Kafka has acknowledged: every batch counted in
        ``published`` went into the outbox, which deletes a row only once Kafka acknowledged
        it (a batch being appended is in the outbox but not yet in ``published``, so the
        bound errs low). Not ``publish_many``'s results: a batch not acknowledged within
        ``ack_timeout`` is reported as queued, and on a busy box that can be every batch."""
        return published - publisher.pending_count()

    sender = threading.Thread(target=publish_all, name="test-publisher")
    try:
        sender.start()
        acked = [0]  # the bound that allowed the kill (it dips while a batch is appended)

        def enough_acknowledged() -> bool:
            acked[0] = acknowledged()
            return acked[0] >= KILL_AFTER

        wait_until(
            enough_acknowledged, timeout=120, message=f"Kafka acknowledges {KILL_AFTER} events"
        )
        private_broker.kill()
        killed_at = time.monotonic()
        broker_dead.set()

        wait_until(
            lambda: all(state_of(rc) is DataSourceState.INTERRUPTED for rc in services),
            timeout=30,
            message="every instance notices the dead broker",
        )
        detected_after = time.monotonic() - killed_at
        early: list[float] = []
        late: list[float] = []
        for rc in services:
            wait_until(
                refused_as_unavailable(rc, innocent, early, late),
                timeout=MAX_STALENESS + 10,
                message="verify fails closed once max_staleness has passed",
            )
        assert early == [], "refused before max_staleness had passed"
        assert late == [], "accepted after max_staleness had passed"

        sender.join(60)
        assert not sender.is_alive()
        assert failures == []
        assert published == EVENTS
        assert publisher.pending_count() > 0, "the outage should have queued events"

        private_broker.restart()
        assert publisher.wait_until_drained(90)
        wait_until(
            lambda: all(converged(rc, log) for rc, log in zip(services, logs, strict=True)),
            timeout=120,
            message="every instance applies all revocations after the restart and is VALID",
        )
    finally:
        broker_dead.set()  # a failure before the kill must not leave the sender waiting
        publisher.close(timeout=5)
        sender.join(10)

    # A producer the publisher dropped without closing keeps its network thread running
    # (and raises later from __del__, where pytest can only report it at session end).
    leaked = producer_threads() - threads_before
    assert not leaked, f"the publisher left producer threads running: {sorted(map(str, leaked))}"

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
            acked_before_kill=acked[0],
            published_during_outage=EVENTS - HOLD_AT,
            detected_after_s=round(detected_after, 2),
        )
