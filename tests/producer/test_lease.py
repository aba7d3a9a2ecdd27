from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from producer import Publisher
from producer._lease import DrainLease
from producer._outbox import Outbox
from revocation_events import TokenRevoked
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.producer._support import UNREACHABLE, PublisherProcess, read_records
from tests.producer.conftest import MakeSettings

DURATION = 30.0


class FakeClock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def outboxes(tmp_path: Path) -> Iterator[tuple[Outbox, Outbox]]:
    """Two connections to one outbox file, as two processes have."""
    path = tmp_path / "outbox.sqlite3"
    first, second = Outbox(path), Outbox(path)
    yield first, second
    first.close()
    second.close()


def leases(outboxes: tuple[Outbox, Outbox], clock: FakeClock) -> tuple[DrainLease, DrainLease]:
    a, b = outboxes
    return (
        DrainLease(a, duration=DURATION, owner="a", clock=clock),
        DrainLease(b, duration=DURATION, owner="b", clock=clock),
    )


def test_only_one_process_holds_the_lease(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    assert not b.hold()
    assert a.held
    assert not b.held
    assert outboxes[1].lease() == ("a", clock.now + DURATION)


def test_a_dead_holders_lease_expires_and_another_process_takes_over(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    clock.now += DURATION - 0.001  # a is gone: nobody renews
    assert not b.hold()
    clock.now += 0.001
    assert b.hold()
    assert outboxes[0].lease() == ("b", clock.now + DURATION)


def test_a_draining_holder_renews_so_nobody_takes_over(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    for _ in range(10):  # 10 x 12 s: four times the lease, checked before each batch
        assert a.hold()
        clock.now += 12.0
        assert not b.hold()


def test_a_stalled_holder_that_lost_the_lease_stops(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    clock.now += DURATION + 5  # a paused (SIGSTOP, GC) past its lease; b took over
    assert b.hold()
    clock.now += 1
    assert not a.hold()  # checked before its next batch: no more sends from a
    assert not a.held
    assert outboxes[0].lease() == ("b", clock.now - 1 + DURATION)


def test_a_stalled_holder_keeps_the_lease_nobody_took(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    clock.now += DURATION + 5
    assert a.hold()  # expired, but still its own: nobody else can have sent
    assert not b.hold()


def test_release_lets_another_process_take_over_at_once(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    a.release()
    assert not a.held
    assert b.hold()
    a.release()  # not the holder: b's lease stays
    assert outboxes[0].lease() == ("b", clock.now + DURATION)


def test_checks_within_the_first_third_of_the_lease_do_not_write(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, b = leases(outboxes, clock)
    assert a.hold()
    version = outboxes[1].data_version()
    clock.now += DURATION / 3 - 0.001
    assert a.hold()
    assert not b.hold()  # refused from a read, without the write lock
    assert outboxes[1].data_version() == version
    clock.now += 0.001
    assert a.hold()
    assert outboxes[1].data_version() != version  # renewed in the file
    assert outboxes[1].lease() == ("a", clock.now + DURATION)


def test_a_clock_stepping_back_rewrites_the_lease_instead_of_trusting_it(
    outboxes: tuple[Outbox, Outbox], clock: FakeClock
) -> None:
    a, _ = leases(outboxes, clock)
    assert a.hold()
    clock.now -= 3600
    assert a.hold()
    assert outboxes[1].lease() == ("a", clock.now + DURATION)


def test_owner_ids_name_the_process_and_differ_per_publisher(
    outboxes: tuple[Outbox, Outbox],
) -> None:
    first, second = (DrainLease(o, duration=DURATION) for o in outboxes)
    assert first.owner != second.owner
    assert first.owner.split("-")[0].isdigit()


# -- publishers sharing one outbox file ---------------------------------------------


def process_env(bootstrap: str, topic: str, outbox: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_")}
    env.update(
        {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "REVOCAST_TOPIC": topic,
            "REVOCAST_EVENT_ISSUER": "identity-test",
            "REVOCAST_SIGNING_KEY": "proc:hmac:" + "A" * 43,
            "REVOCAST_OUTBOX_PATH": str(outbox),
            "REVOCAST_ACK_TIMEOUT": "10",
            "REVOCAST_MAX_BLOCK": "2",
            **{f"REVOCAST_{name.upper()}": value for name, value in settings.items()},
        }
    )
    return env


def lease_owner(path: Path) -> str | None:
    outbox = Outbox(path)
    try:
        lease = outbox.lease()
    finally:
        outbox.close()
    return None if lease is None else lease[0]


def lease_owner_pid(path: Path) -> int | None:
    owner = lease_owner(path)
    return None if owner is None else int(owner.split("-")[0])


def holds_for(condition: Callable[[], bool], *, seconds: float) -> None:
    """Check ``condition`` every 50 ms for ``seconds``; fail the test the first time it is false."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert condition()
        threading.Event().wait(0.05)


def event_ids(records: list[Any], key: str) -> list[str]:
    return [r.value.split(b'"id":"')[1][:36].decode() for r in records if r.key == key.encode()]


def test_a_closed_publisher_hands_the_lease_over_at_once(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    settings = make_settings(outbox_lease=600.0)  # an expiry the test could not wait for
    path = settings.outbox_path
    first = Publisher(settings)
    try:
        assert first._lease is not None
        first_owner = first._lease.owner
        wait_until(lambda: lease_owner(path) == first_owner, timeout=10, message="first holds it")
        with Publisher(settings) as second:
            assert second._lease is not None
            second_owner = second._lease.owner
            first.close()
            wait_until(lambda: lease_owner(path) == second_owner, timeout=10, message="handed over")
    finally:
        first.close()
    assert lease_owner(path) is None


@pytest.mark.kafka
def test_two_processes_sharing_an_outbox_send_each_event_once_in_order(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = make_topic(partitions=1)
    path = tmp_path / "shared.sqlite3"
    env = process_env(kafka_bootstrap, topic, path)
    with PublisherProcess(env) as a:
        wait_until(lambda: lease_owner_pid(path) == a.pid, timeout=30, message="a holds lease")
        with PublisherProcess(env) as b:
            # The holder's calls take ~7 ms each, b's ~60 ms (the holder's drainer finds b's
            # rows by polling the file): 6 to 9 of b's land among a's hundred (measured), the
            # rest after them. A hundred of b's would only add 4 s to that second part.
            a.send("publish a 100")
            b.send("publish b 30")
            results = {"a": a.answer(timeout=120), "b": b.answer(timeout=120)}
    published = {tag: json.loads(line) for tag, line in results.items()}

    records = read_records(kafka_bootstrap, topic, 130)  # exactly 130: none sent twice
    offsets = {r.value.split(b'"id":"')[1][:36].decode(): r.offset for r in records}
    for tag, answers in published.items():
        assert event_ids(records, tag) == [event_id for event_id, *_ in answers]
        # The process that does not drain still learns where its events went.
        assert [(queued, offset) for _, queued, _, offset in answers] == [
            (False, offsets[event_id]) for event_id, *_ in answers
        ]


@pytest.mark.kafka
def test_a_sigkilled_holders_lease_expires_and_the_next_process_sends_the_rest(
    kafka_bootstrap: str, make_topic: MakeTopic, make_settings: MakeSettings, tmp_path: Path
) -> None:
    topic = make_topic(partitions=1)
    path = tmp_path / "shared.sqlite3"
    # The holder cannot reach Kafka (a partitioned host): it keeps the lease, sends nothing.
    stuck = PublisherProcess(process_env(UNREACHABLE, topic, path, outbox_lease="3"))
    try:
        wait_until(
            lambda: lease_owner_pid(path) == stuck.pid, timeout=30, message="first holds lease"
        )
        settings = make_settings(
            bootstrap=kafka_bootstrap,
            topic=topic,
            outbox_path=path,
            outbox_lease=3.0,
            ack_timeout=0.2,
        )
        exp = datetime.now(UTC) + timedelta(hours=1)
        events = [
            TokenRevoked(issuer="identity-test", jti=f"t-{n}", sub="s", expires_at=exp)
            for n in range(20)
        ]
        with Publisher(settings) as publisher:
            # One call, so one ack_timeout: the holder starts retrying as the rows land.
            results = publisher.publish_many(events)
            assert all(r.queued for r in results)  # not sent behind the holder's back
            # Retrying, it backs off, never longer than a third of its lease: it keeps it.
            # Backoffs doubling from 0.1 s past the 3 s lease would lose it ~6 s after the
            # rows landed (0.1 + ... + 1.6, then a 3.2 s wait); 8 s covers that.
            holds_for(lambda: lease_owner_pid(path) == stuck.pid, seconds=8)
            assert publisher.pending_count() == 20

            stuck.kill()  # SIGKILL: no release; the lease must expire
            assert publisher.wait_until_drained(timeout=30)
            assert lease_owner_pid(path) == os.getpid()
    finally:
        stuck.close()
    records = read_records(kafka_bootstrap, topic, 20)
    assert event_ids(records, "s") == [str(r.event_id) for r in results]


@pytest.mark.kafka
def test_a_stopped_holder_is_replaced_and_sends_nothing_itself_once_resumed(
    kafka_bootstrap: str, make_topic: MakeTopic, make_settings: MakeSettings, tmp_path: Path
) -> None:
    topic = make_topic(partitions=1)
    path = tmp_path / "shared.sqlite3"
    settings = make_settings(
        bootstrap=kafka_bootstrap,
        topic=topic,
        outbox_path=path,
        outbox_lease=4.0,
        ack_timeout=0.2,
    )
    with PublisherProcess(process_env(kafka_bootstrap, topic, path, outbox_lease="4")) as old:
        wait_until(lambda: lease_owner_pid(path) == old.pid, timeout=30, message="old holds lease")
        before = old.publish("old", 5)
        # Opened before the stall: the holder renews every third of its lease, so at least
        # 2.7 s of it remain at the SIGSTOP, against one 0.2 s publish below.
        with Publisher(settings) as publisher:
            os.kill(old.pid, signal.SIGSTOP)  # a stall (GC pause, SIGSTOP) longer than the lease
            try:
                exp = datetime.now(UTC) + timedelta(hours=1)
                first = publisher.revoke_token("new-0", expires_at=exp, sub="new")
                assert first.queued  # the stopped holder's lease still runs
                assert lease_owner_pid(path) == old.pid
                assert publisher.wait_until_drained(timeout=30)  # then it expired: taken over
                assert lease_owner_pid(path) == os.getpid()
                os.kill(old.pid, signal.SIGCONT)
                after = old.publish("old", 5)  # sent by the new holder, acked to the old one
            finally:
                os.kill(old.pid, signal.SIGCONT)
    records = read_records(kafka_bootstrap, topic, 11)  # exactly 11: nothing sent twice
    assert event_ids(records, "old") == [e for e, *_ in before + after]
    assert not any(queued for _, queued, *_ in before + after)
    assert event_ids(records, "new") == [str(first.event_id)]
