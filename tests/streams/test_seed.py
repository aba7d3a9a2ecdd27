"""Reading state partitions back to seed a rules table, against the broker."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from revocation_events import KafkaSettings, TokenRevoked
from streams import StreamsError, StreamsSettings
from streams import _seed as seed
from streams._records import Output, marker_record
from streams._seed import read_state
from tests._kafka_fixtures import MakeTopic
from tests.streams._support import KEY, SIGNING_CODEC, at, uid

pytestmark = pytest.mark.kafka


@pytest.fixture
def settings(kafka_bootstrap: str, make_topic: MakeTopic) -> Iterator[StreamsSettings]:
    log = make_topic(partitions=3)
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        admin.create_topics([NewTopic(f"{log}.state", 3, 1)])
        yield StreamsSettings(
            kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log),
            verification_keys=(KEY.verification_key(),),
        )
        admin.delete_topics([f"{log}.state"], timeout_ms=30_000)
    finally:
        admin.close()


def test_rule_records_come_back_per_partition_without_markers_tombstones_or_reserved_keys(
    settings: StreamsSettings,
) -> None:
    first, second, third = (
        SIGNING_CODEC.encode(TokenRevoked(id=uid(n), issuer="i", jti=f"j{n}", expires_at=at(60)))
        for n in range(3)
    )
    producer = KafkaProducer(bootstrap_servers=list(settings.kafka.bootstrap_servers))
    try:
        sends = [
            (0, b"jti:j0", first.value, first.headers),
            (0, b"__offsets__:0", b'{"topic":"t","partition":0,"offset":5}', ()),
            (0, b"jti:gone", None, ()),
            (0, b"__future__", b"reserved", ()),
            (2, b"jti:j1", second.value, second.headers),
            (2, b"jti:j2", third.value, ()),  # unsigned: the processor decides
        ]
        for partition, key, value, headers in sends:
            producer.send(
                settings.state_topic,
                key=key,
                value=value,
                partition=partition,
                headers=list(headers),
            )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    found = read_state(settings, [2, 0, 0], timeout=60)
    assert found == {
        0: [(first.value, first.headers[0][1])],
        2: [(second.value, second.headers[0][1]), (third.value, None)],
    }
    assert read_state(settings, [1], timeout=60) == {1: []}
    assert read_state(settings, []) == {}


def test_an_unreachable_cluster_is_a_streams_error(settings: StreamsSettings) -> None:
    unreachable = StreamsSettings(
        kafka=KafkaSettings(
            bootstrap_servers=("127.0.0.1:1",), topic="t", request_timeout_ms=2_000
        ),
        verification_keys=settings.verification_keys,
    )
    started = time.monotonic()
    with pytest.raises(StreamsError, match="cannot read the state topic"):
        read_state(unreachable, [0], timeout=2)
    # The timeout bounds reaching a broker too (kafka-python's own bootstrap wait is 30 s).
    assert time.monotonic() - started < 20


class _Trickle:
    """A consumer that hands over one record per poll, on a fake clock that moves 1 s per
    poll: slow but steady, then stuck."""

    def __init__(self, clock: list[float], records: int, stuck_after: int) -> None:
        self.clock = clock
        self.records = records
        self.stuck_after = stuck_after
        self.offset = 0

    def assign(self, tps: list[TopicPartition]) -> None:
        self.tp = tps[0]

    def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, self.records)

    def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.offset = offset

    def poll(self, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        self.clock[0] += 1.0
        if self.offset >= self.stuck_after:
            return {}
        record = SimpleNamespace(offset=self.offset, key=b"jti:x", value=b"v", headers=[])
        self.offset += 1
        return {self.tp: [record]}

    def position(self, tp: TopicPartition) -> int:
        return self.offset

    def close(self) -> None:
        pass


@pytest.mark.parametrize(("stuck_after", "reads"), [(100, True), (50, False)])
def test_the_timeout_bounds_a_stall_not_a_long_steady_read(
    monkeypatch: pytest.MonkeyPatch, stuck_after: int, reads: bool
) -> None:
    """100 records at one a second with a 10 s timeout: read (a large state took longer than
    any fixed bound); stuck after 50: a StreamsError 10 s later."""
    clock = [0.0]
    consumer = _Trickle(clock, records=100, stuck_after=stuck_after)
    fake = type("FakeConsumer", (), {"DEFAULT_CONFIG": {}, "__new__": lambda cls, **_: consumer})
    monkeypatch.setattr(seed, "KafkaConsumer", fake)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    settings = StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=("127.0.0.1:1",), topic="t"), allow_unsigned=True
    )
    if reads:
        assert len(seed.read_state(settings, [0], timeout=10)[0]) == 100
    else:
        with pytest.raises(StreamsError, match="nothing read for 10s"):
            seed.read_state(settings, [0], timeout=10)
        assert 60 <= clock[0] <= 62


def test_a_state_partition_whose_last_marker_names_another_log_incarnation_is_left_out(
    settings: StreamsSettings,
) -> None:
    """The log deleted and recreated under the same name, the state topic left: its records
    are the deleted log's rules, which the worker seeded its table with."""
    current, begins = seed.log_incarnation(settings, [0, 1, 2])
    assert current is not None, "kafka-python no longer exposes topic ids where we look"
    assert begins == {0: 0, 1: 0, 2: 0}
    old = uuid.UUID("11111111-1111-4111-8111-111111111111")
    rule = SIGNING_CODEC.encode(TokenRevoked(id=uid(1), issuer="i", jti="j1", expires_at=at(60)))
    log = settings.log_topic
    producer = KafkaProducer(bootstrap_servers=list(settings.kafka.bootstrap_servers))
    try:
        for p, named in ((0, old), (1, current), (2, None)):
            for out in (
                Output("state", b"jti:j1", rule.value, p, tuple(rule.headers)),
                marker_record(log, p, 5, topic_id=old),  # an older marker: the last counts
                marker_record(log, p, 9, topic_id=named),
            ):
                producer.send(
                    settings.state_topic,
                    key=out.key,
                    value=out.value,
                    partition=out.partition,
                    headers=list(out.headers),
                )
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    found = read_state(settings, [0, 1, 2], timeout=60, topic_id=current)
    assert sorted(found) == [1, 2], "a marker without an id was written before they named one"
    assert all(len(records) == 1 for records in found.values())
    assert sorted(read_state(settings, [0, 1, 2], timeout=60)) == [0, 1, 2]


def test_a_last_marker_whose_topic_id_is_not_a_uuid_is_passed_over_as_sdks_do(
    settings: StreamsSettings,
) -> None:
    """SDKs pass such a marker over and judge the partition by the marker before it: the
    worker judged it by the unreadable one (another incarnation) and stopped marking a
    partition SDKs still bootstrap from."""
    current, _ = seed.log_incarnation(settings, [0])
    assert current is not None, "kafka-python no longer exposes topic ids where we look"
    rule = SIGNING_CODEC.encode(TokenRevoked(id=uid(1), issuer="i", jti="j1", expires_at=at(60)))
    good = marker_record(settings.log_topic, 0, 5, topic_id=current)
    bad = b'{"topic":"%s","partition":0,"offset":9,"topic_id":"not-a-uuid"}' % (
        settings.log_topic.encode()
    )
    producer = KafkaProducer(bootstrap_servers=list(settings.kafka.bootstrap_servers))
    try:
        for key, value, headers in (
            (b"jti:j1", rule.value, list(rule.headers)),
            (good.key, good.value, []),
            (good.key, bad, []),
        ):
            producer.send(settings.state_topic, key=key, value=value, partition=0, headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    assert read_state(settings, [0], timeout=60, topic_id=current) == {
        0: [(rule.value, rule.headers[0][1])]
    }
