"""The Kafka source against a real broker: bootstrap, tail, garbage, new partitions, processes."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions
from kafka.errors import KafkaTimeoutError

from consumer_sdk import (
    DataSourceState,
    Revocast,
    SourceErrorKind,
    StateUnavailableError,
    TokenRevokedError,
)
from consumer_sdk._errors import SourceError
from consumer_sdk._kafka_source import KafkaSource
from revocation_events import (
    BaseEvent,
    Event,
    EventCodec,
    EventSigner,
    KafkaSettings,
    TokenRevoked,
)
from tests._kafka_fixtures import MakeTopic, wait_until
from tests.consumer_sdk._helpers import EVENT_KEY, settings, token
from tests.consumer_sdk._worker import verifying_service

pytestmark = pytest.mark.kafka

CODEC = EventCodec(signer=EventSigner(EVENT_KEY))


def revoke(jti: str) -> TokenRevoked:
    return TokenRevoked(issuer="test", jti=jti, expires_at=datetime.now(UTC) + timedelta(hours=1))


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, linger_ms=5)
    yield p
    p.close(timeout=10)


def send(
    producer: KafkaProducer, topic: str, event: BaseEvent, partition: int | None = None
) -> None:
    rec = CODEC.encode(event)
    producer.send(
        topic, key=rec.key, value=rec.value, headers=list(rec.headers), partition=partition
    )


def client(bootstrap: str, topic: str, **overrides: Any) -> Revocast:
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
    return Revocast(settings(kafka=kafka, **overrides))


def refused(rc: Revocast, tok: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            rc.verify(tok)
        except TokenRevokedError:
            return True
        return False

    return check


def test_ready_only_after_every_event_on_the_topic_at_start_is_applied(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=3)
    n = 3000
    for i in range(n):
        send(producer, topic, revoke(f"j{i}"))
    producer.flush(30)
    with client(kafka_bootstrap, topic) as rc:
        assert rc.wait_until_ready(60)
        stats = rc.stats()
        assert stats["applied"] == {"token.revoked": n}
        assert stats["entries"]["jti"] == n
        assert sorted(stats["partitions"]) == [0, 1, 2]
        assert all(stats["positions"][p] >= stats["start_end_offsets"][p] for p in range(3))
        assert refused(rc, token(jti=f"j{n - 1}"))()


def test_empty_topic_becomes_ready_and_then_tails_new_revocations(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=2)
    with client(kafka_bootstrap, topic) as rc:
        assert rc.wait_until_ready(30)
        assert rc.status.state is DataSourceState.VALID
        tok = token(jti="later")
        assert rc.verify(tok)
        send(producer, topic, revoke("later"))
        producer.flush(10)
        wait_until(refused(rc, tok), timeout=10, message="revocation tailed")


def test_shared_kafka_options_for_other_client_kinds_do_not_stop_the_consumer(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    # REVOCAST_KAFKA_OPTIONS reaches every client; kafka-python refuses options it does not
    # know, so a producer-only one (for the publisher) used to keep the SDK from ever starting.
    topic = make_topic(partitions=2)
    extra = {"compression_type": "gzip", "isolation_level": "read_committed"}
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=topic, extra=extra)
    with Revocast(settings(kafka=kafka)) as rc:
        assert rc.wait_until_ready(30), rc.status
        tok = token(jti="with-options")
        send(producer, topic, revoke("with-options"))
        producer.flush(10)
        wait_until(refused(rc, tok), timeout=10, message="revocation tailed")


def test_the_replay_reaches_back_past_the_token_lifetime_for_a_producer_clock_behind(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    # The replay starts by record timestamp, which the publisher's host sets. A host running
    # 2 min behind stamps a revocation older than it is: the token it covers is still valid,
    # yet a start at exactly now - max_token_lifetime skipped the record.
    topic = make_topic(partitions=1)
    lifetime, lag = 600.0, 120.0
    now = time.time()
    rec = CODEC.encode(
        TokenRevoked(
            issuer="i",
            jti="stamped-late",
            expires_at=datetime.fromtimestamp(now + 60, UTC),
            occurred_at=datetime.fromtimestamp(now - lifetime + 60 - lag, UTC),
        )
    )
    producer.send(
        topic,
        key=rec.key,
        value=rec.value,
        headers=list(rec.headers),
        timestamp_ms=int((now - lifetime - 30) * 1000),
    )
    producer.flush(10)
    with client(kafka_bootstrap, topic, max_token_lifetime=lifetime) as rc:
        assert rc.wait_until_ready(30)
        assert refused(rc, token(jti="stamped-late"))()


def test_a_listener_that_blocks_the_sync_thread_makes_the_sdk_fail_closed_not_stale(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    # Listeners run on the sync thread. One that blocks used to leave the status VALID while
    # no revocation was applied: revoked tokens were accepted, with health saying all is well.
    topic = make_topic(partitions=1)
    release = threading.Event()

    def blocking(event: Event) -> None:
        release.wait(60)

    with client(kafka_bootstrap, topic, max_staleness=2.0) as rc:
        assert rc.wait_until_ready(30)
        rc.add_revocation_listener(blocking)
        send(producer, topic, revoke("first"))
        send(producer, topic, revoke("second"))
        producer.flush(10)
        try:
            wait_until(
                lambda: rc.status.state is DataSourceState.INTERRUPTED,
                timeout=15,
                message="stall reported",
            )
            assert rc.status.error_kind is SourceErrorKind.SYNC_STALLED
            with pytest.raises(StateUnavailableError):  # past max_staleness: refused
                wait_until(lambda: not rc.verify(token(jti="second")), timeout=15, message="")
        finally:
            release.set()
        wait_until(lambda: rc.status.state is DataSourceState.VALID, timeout=15, message="back")
        assert refused(rc, token(jti="second"))()


def test_garbage_records_are_skipped_and_counted_while_revocations_around_them_apply(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=1)
    unsigned = EventCodec().encode(revoke("unsigned"))
    send(producer, topic, revoke("before"))
    signer = EventSigner(EVENT_KEY)
    producer.send(topic, value=b"\x00\xffgarbage", headers=[signer.header(b"\x00\xffgarbage")])
    producer.send(topic, value=unsigned.value, headers=[("revocast-sig", b"ev1.HS256.AAAA")])
    producer.send(topic, value=unsigned.value)
    producer.send(topic, value=None, key=b"tombstone")
    send(producer, topic, revoke("after"))
    producer.flush(10)
    with client(kafka_bootstrap, topic) as rc:
        assert rc.wait_until_ready(30)
        stats = rc.stats()
        assert stats["skipped"] == {"not_json": 1, "bad_signature": 1, "unsigned": 1, "invalid": 1}
        assert stats["applied"] == {"token.revoked": 2}
        assert refused(rc, token(jti="before"))()
        assert refused(rc, token(jti="after"))()
        assert not refused(rc, token(jti="unsigned"))()
        assert rc.status.state is DataSourceState.VALID


def test_running_out_of_memory_while_decoding_retries_the_record_instead_of_skipping_it(
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    producer: KafkaProducer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A MemoryError says nothing about the record: skipped as ``invalid``, a genuine
    # revocation was lost for good while the status stayed VALID.
    topic = make_topic(partitions=1)
    for jti in ("before", "oom", "after"):
        send(producer, topic, revoke(jti))
    producer.flush(10)
    real_decode = EventCodec.decode
    failed: list[bool] = []

    def decode_once_out_of_memory(self: EventCodec, value: bytes | None, headers: Any) -> Any:
        if value is not None and b'"oom"' in bytes(value) and not failed:
            failed.append(True)
            raise MemoryError
        return real_decode(self, value, headers)

    monkeypatch.setattr(EventCodec, "decode", decode_once_out_of_memory)
    with client(kafka_bootstrap, topic) as rc:
        assert rc.wait_until_ready(30)
        assert failed
        assert all(refused(rc, token(jti=jti))() for jti in ("before", "oom", "after"))
        assert rc.stats()["skipped"] == {}


def test_partitions_added_while_running_are_read_from_their_start(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=1)
    send(producer, topic, revoke("early"))
    producer.flush(10)
    with client(kafka_bootstrap, topic, partition_check_interval=0.5) as rc:
        assert rc.wait_until_ready(30)
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.create_partitions({topic: NewPartitions(total_count=3)})
        finally:
            admin.close()
        fresh = KafkaProducer(bootstrap_servers=kafka_bootstrap)  # metadata with 3 partitions
        try:
            wait_until(lambda: len(fresh.partitions_for(topic)) == 3, timeout=15, message="3 parts")
            send(fresh, topic, revoke("on-new-partition"), partition=2)
            fresh.flush(10)
        finally:
            fresh.close(timeout=10)
        wait_until(
            refused(rc, token(jti="on-new-partition")),
            timeout=20,
            message="revocation on a partition created after start",
        )
        stats = rc.stats()
        assert 2 in stats["partitions"]
        # Regression: each partition check used to rewind every partition to offset 0.
        assert stats["unchanged"] == {}
        assert stats["applied"] == {"token.revoked": 2}


def test_two_processes_refuse_within_a_second_and_a_late_starter_refuses_when_ready(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=3)
    target, other = token(jti="target"), token(jti="other")
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    args = (kafka_bootstrap, topic, target, other, out)
    procs = [ctx.Process(target=verifying_service, args=args) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            kind, ready, already = out.get(timeout=60)
            assert (kind, ready, already) == ("ready", True, False)
        published = time.time()
        send(producer, topic, revoke("target"))
        producer.flush(10)
        for _ in procs:
            kind, refused_at, other_ok = out.get(timeout=30)
            assert kind == "revoked"
            assert refused_at is not None
            assert refused_at - published < 1.0
            assert other_ok
        late = ctx.Process(target=verifying_service, args=args)
        late.start()
        procs.append(late)
        kind, ready, already = out.get(timeout=60)
        assert (kind, ready, already) == ("ready", True, True)
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in procs] == [0, 0, 0]


def test_forked_child_restarts_its_source_and_follows_new_revocations(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=1)
    send(producer, topic, revoke("old"))
    producer.flush(10)
    rc = client(kafka_bootstrap, topic)
    try:
        assert rc.wait_until_ready(30)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: no pytest machinery here, report through the pipe
            code = 1
            try:
                inherited = refused(rc, token(jti="old"))()
                ready = rc.wait_until_ready(30)
                os.write(from_child_w, b"R" if ready and inherited else b"F")
                os.read(to_child_r, 1)
                wait_until(refused(rc, token(jti="new")), timeout=15, message="child follows")
                code = 0
            finally:
                os._exit(code)
        assert os.read(from_child_r, 1) == b"R"
        send(producer, topic, revoke("new"))
        producer.flush(10)
        os.write(to_child_w, b"go")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert rc.status.state is DataSourceState.VALID
    finally:
        rc.close()


class _RecordingSink:
    """An UpdateSink that keeps (partition, offset) of every record, in delivery order."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.valid = threading.Event()

    def records(self, records: Any) -> None:
        self.seen.extend((r.partition, r.offset) for r in records)

    def record(self, value: bytes | None, headers: Any, *, timestamp_ms: int | None = None) -> None:
        raise AssertionError("the Kafka source hands whole fetches to a sink that takes them")

    def event(self, event: Any) -> None:
        raise AssertionError("not called by the Kafka source")

    def status(
        self,
        state: DataSourceState,
        error: str | None = None,
        *,
        kind: SourceErrorKind | None = None,
        since: float | None = None,
    ) -> None:
        if state is DataSourceState.VALID:
            self.valid.set()

    def tick(self) -> None:
        pass


def test_a_backlog_is_delivered_once_in_offset_order_while_fetching_ahead(
    kafka_bootstrap: str, make_topic: MakeTopic, producer: KafkaProducer
) -> None:
    topic = make_topic(partitions=2)
    n = 6000  # many fetches, most of them large enough to fetch ahead
    for i in range(n):
        send(producer, topic, revoke(f"j{i}"), partition=i % 2)
    producer.flush(30)
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=topic)
    source = KafkaSource(settings(kafka=kafka))
    sink = _RecordingSink()
    source.start(sink)  # type: ignore[arg-type]
    try:
        assert sink.valid.wait(60)
        for p in (0, 1):
            assert [o for q, o in sink.seen if q == p] == list(range(n // 2))
        assert source.stats()["positions"] == {0: n // 2, 1: n // 2}
    finally:
        source.close(10)


def test_the_sync_thread_drives_its_consumers_network_io_itself(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=make_topic())
    consumer = KafkaSource(settings(kafka=kafka))._connect()
    try:
        assert consumer._net._io_thread is None  # no kafka-python I/O thread to hand off to
    finally:
        consumer.close(timeout_ms=5000)


class _BlinkingMetadataConsumer:
    """A consumer whose topic vanishes from the cluster metadata after the first lookup (a
    metadata answer with a topic-level error, e.g. from a broker with a stale cache), and
    whose fetches have not returned the backlog yet."""

    def __init__(self, topic: str) -> None:
        self.tp = TopicPartition(topic, 0)
        self.lookups = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        self.lookups += 1
        return {0} if self.lookups == 1 else set()

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return dict.fromkeys(tps, 10)

    def assign(self, tps: list[TopicPartition]) -> None:
        pass

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    def poll(self, timeout_ms: int) -> dict[Any, list[Any]]:
        return {}

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return 0

    def close(self, timeout_ms: int) -> None:
        pass


def test_a_topic_missing_from_one_metadata_answer_does_not_make_a_lagging_source_valid() -> None:
    kafka = KafkaSettings(bootstrap_servers=("127.0.0.1:1",), topic="t")
    source = KafkaSource(
        settings(kafka=kafka, replay_from_beginning=True, partition_check_interval=0.001)
    )
    consumer = _BlinkingMetadataConsumer("t")
    source._connect = lambda: consumer  # type: ignore[method-assign]
    source._retention = {}  # no admin client: there is no broker
    sink = _RecordingSink()
    source.start(sink)  # type: ignore[arg-type]
    try:
        wait_until(lambda: consumer.lookups >= 5, timeout=10, message="metadata checked")
        assert not sink.valid.is_set(), "VALID at offset 0 of 10: events never applied"
        assert source.stats()["partitions"] == [0]
    finally:
        source.close(10)


class _Unstoppable:
    """A thread that ignores the stop: each join waits out its whole timeout."""

    def __init__(self) -> None:
        self.timeouts: list[float] = []

    def join(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        threading.Event().wait(timeout)

    def is_alive(self) -> bool:
        return True


def test_close_waits_for_the_sync_thread_and_the_stall_watch_within_one_timeout() -> None:
    """A listener blocking both threads made close(timeout) take twice the timeout."""
    source = KafkaSource(settings(kafka=KafkaSettings(bootstrap_servers=("127.0.0.1:1",))))
    sync, watch = _Unstoppable(), _Unstoppable()
    source._thread = sync  # type: ignore[assignment]
    source._watch = watch  # type: ignore[assignment]
    source.close(0.3)
    assert sync.timeouts == [0.3]
    assert watch.timeouts[0] < 0.1, "the stall watch got a timeout of its own"


class _RecordingStop(threading.Event):
    """The source's stop event, whose backoff waits return at once and are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout or 0.0)
        return self.is_set()


class _FailingAfterReadyConsumer(_BlinkingMetadataConsumer):
    """An empty topic: the session is VALID at once, then the liveness probe fails."""

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self.probes = 0

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        self.probes += 1
        if self.probes > 1:
            raise KafkaTimeoutError("broker restarting")
        return dict.fromkeys(tps, 0)


def test_a_failure_after_the_source_was_valid_retries_after_the_shortest_backoff() -> None:
    """Earlier failures (a broker down at start) must not stretch the retry after a later
    blip past ``max_staleness``: the backoff starts over once a session was VALID."""
    kafka = KafkaSettings(bootstrap_servers=("127.0.0.1:1",), topic="t")
    source = KafkaSource(
        settings(kafka=kafka, replay_from_beginning=True, partition_check_interval=0.001)
    )
    stop = source._stop = _RecordingStop()
    connects = 0

    def connect() -> Any:
        nonlocal connects
        connects += 1
        if connects <= 4:
            raise SourceError("cannot connect to Kafka: broker down")
        return _FailingAfterReadyConsumer("t")

    source._connect = connect  # type: ignore[method-assign]
    source._retention = {}
    sink = _RecordingSink()
    source.start(sink)  # type: ignore[arg-type]
    try:
        wait_until(lambda: len(stop.waits) >= 6, timeout=10, message="six retries")
        assert sink.valid.is_set()
        assert stop.waits[:6] == [0.5, 1.0, 2.0, 4.0, 0.5, 0.5]
    finally:
        source.close(10)
