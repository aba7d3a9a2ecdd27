"""Reading state partitions back to seed a rules table, against the broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from revocation_events import KafkaSettings, TokenRevoked
from streams import StreamsError, StreamsSettings
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
    with pytest.raises(StreamsError, match="cannot read the state topic"):
        read_state(unreachable, [0], timeout=10)
