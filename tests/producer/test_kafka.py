from __future__ import annotations

import gc
import os
import signal
import sys
import time
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from kafka.errors import KafkaError, KafkaTimeoutError

from producer import PublishError, PublisherSettings, ensure_topic
from producer._kafka import Ack, KafkaSender, producer_config, require_reachable
from revocast.localkafka import LocalKafkaBroker
from revocation_events import (
    EncodedEvent,
    EventCodec,
    EventSigner,
    KafkaSettings,
    SigningKey,
    TokenRevoked,
)
from tests.producer._support import UNREACHABLE
from tests.producer.conftest import MakeSettings


def test_producer_is_idempotent_with_acks_all_and_bounded_waits(
    make_settings: MakeSettings,
) -> None:
    config = producer_config(make_settings(delivery_timeout=7, max_block=2))
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["delivery_timeout_ms"] == 7000
    assert config["max_block_ms"] == config["bootstrap_timeout_ms"] == 2000
    # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
    assert config["request_timeout_ms"] + config["linger_ms"] <= config["delivery_timeout_ms"]


def test_passthrough_options_reach_the_producer(make_settings: MakeSettings) -> None:
    config = producer_config(make_settings(producer_options={"compression_type": "gzip"}))
    assert config["compression_type"] == "gzip"
    assert config["acks"] == "all"


def test_an_option_value_kafka_python_refuses_is_a_publish_error(
    kafka_bootstrap: str, make_settings: MakeSettings
) -> None:
    options = {"compression_type": "bogus"}
    settings = make_settings(bootstrap=kafka_bootstrap, producer_options=options, delivery="direct")
    sender = KafkaSender(settings)
    try:
        with pytest.raises(PublishError, match="refused the producer options"):
            sender.send([])
    finally:
        sender.close(1.0)


def test_unreachable_bootstrap_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(PublishError, match="no Kafka broker reachable"):
        require_reachable({"bootstrap_servers": [UNREACHABLE]})
    assert time.monotonic() - started < 2.0


@pytest.mark.kafka
@pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning")
def test_reset_with_batches_pending_on_a_silent_broker_closes_the_producer(
    private_broker: LocalKafkaBroker,
) -> None:
    """kafka-python 3.0's close(timeout) raises before closing when it cannot flush; the
    sender must still stop the producer's network thread (it used to keep retrying, and its
    ``__del__`` raised from the garbage collector)."""
    kafka = KafkaSettings(bootstrap_servers=(private_broker.bootstrap_servers,), topic="revs")
    ensure_topic(kafka, partitions=3, max_token_lifetime=3600)
    key = SigningKey.hmac("ev1", b"e" * 32)
    settings = PublisherSettings(
        issuer="idp",
        kafka=kafka,
        signing_key=key,
        delivery="direct",
        delivery_timeout=5.0,
        ack_timeout=0.2,
        max_block=1.0,
    )
    codec = EventCodec(signer=EventSigner(key))
    expires = datetime.now(UTC) + timedelta(hours=1)
    sender = KafkaSender(settings)
    warm = sender.send([codec.encode(TokenRevoked(issuer="idp", jti="warm", expires_at=expires))])
    assert sender.wait(warm, 10)
    producer = sender._producer
    assert producer is not None
    assert producer._sender.is_alive()
    unraisable: list[object] = []
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    pid = private_broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # connected, but never answers
    try:
        events = [TokenRevoked(issuer="idp", jti=f"j{i}", expires_at=expires) for i in range(50)]
        sender.send([codec.encode(e) for e in events])
        sender.reset()
        assert not producer._sender.is_alive()
        assert producer._closed
        del producer
        gc.collect()
    finally:
        os.kill(pid, signal.SIGCONT)
        sys.unraisablehook = previous_hook
    assert unraisable == []


def test_shared_kafka_options_of_other_client_kinds_do_not_reach_the_producer() -> None:
    # REVOCAST_KAFKA_OPTIONS is shared by the SDK's consumers, the admin client and the
    # producer; kafka-python's producer refuses any option it does not know.
    kafka = KafkaSettings(extra={"isolation_level": "read_committed", "ssl_check_hostname": False})
    config = producer_config(PublisherSettings(issuer="i", allow_unsigned=True, kafka=kafka))
    assert "isolation_level" not in config
    assert config["ssl_check_hostname"] is False


class LateFuture:
    """A send future still in flight for ``polls`` waits, then acknowledged (or failed)."""

    def __init__(self, polls: int, *, error: KafkaError | None = None) -> None:
        self.polls = polls
        self.error = error
        self.is_done = False

    def get(self, timeout: float) -> SimpleNamespace:
        if self.polls > 0:
            self.polls -= 1
            raise KafkaTimeoutError(f"not done after {timeout}s")
        self.is_done = True
        if self.error is not None:
            raise self.error
        return SimpleNamespace(partition=2, offset=41)


def test_wait_calls_the_heartbeat_while_a_batch_is_in_flight() -> None:
    # The drainer renews its outbox lease there: a slow ack is not a dead holder.
    beats: list[None] = []
    outcomes = KafkaSender.wait(
        [LateFuture(3), LateFuture(0)], 30.0, heartbeat=lambda: beats.append(None), every=0.01
    )
    assert outcomes == [Ack(partition=2, offset=41), Ack(partition=2, offset=41)]
    assert len(beats) == 3


def test_wait_reports_a_failed_send_at_once_despite_a_heartbeat() -> None:
    beats: list[None] = []
    failed = LateFuture(0, error=KafkaTimeoutError("delivery timed out"))
    (outcome,) = KafkaSender.wait([failed], 30.0, heartbeat=lambda: beats.append(None))
    assert isinstance(outcome, PublishError)
    assert isinstance(outcome.__cause__, KafkaTimeoutError)
    assert beats == []


def test_a_record_kafka_python_refuses_to_send_is_a_publish_error(
    make_settings: MakeSettings,
) -> None:
    # kafka-python raises ValueError or TypeError from send() for a topic or record it refuses
    # (an illegal topic name, say): a bare ValueError escaped direct publishes.
    def refuse(topic: str, **kwargs: object) -> None:
        raise ValueError(f"Topic name {topic!r} is illegal")

    sender = KafkaSender(make_settings(delivery="direct"))
    sender._producer = SimpleNamespace(send=refuse)
    with pytest.raises(PublishError, match="refused to send") as info:
        sender.send([EncodedEvent(key=b"k", value=b"{}", headers=())])
    assert isinstance(info.value.__cause__, ValueError)
