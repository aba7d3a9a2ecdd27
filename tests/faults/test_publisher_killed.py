"""The identity service is SIGKILLed while the broker is down with revocations in its outbox.

``tests/producer/test_outbox.py`` proves the outbox survives a clean shutdown during an
outage; here the process gets no chance to close anything: SQLite's WAL must hold every
acknowledged ``publish_many`` call, and the next process must deliver them once, in order.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from kafka import KafkaConsumer, TopicPartition

from producer import ensure_topic
from revocast.localkafka import LocalKafkaBroker
from revocation_events import EventCodec, EventVerifier, KafkaSettings, public_key_spec
from tests.consumer_sdk._helpers import EVENT_KEY
from tests.faults._figures import record_figures
from tests.producer._support import read_records

pytestmark = pytest.mark.kafka

EVENTS = 500
BATCH = 50
TOPIC = "revocations"

_PUBLISH_THEN_HANG = textwrap.dedent(
    """
    import sys, threading
    from datetime import UTC, datetime, timedelta
    from producer import Publisher, PublisherSettings
    from revocation_events import TokenRevoked

    count, batch = int(sys.argv[1]), int(sys.argv[2])
    publisher = Publisher(PublisherSettings.from_env())
    exp = datetime.now(UTC) + timedelta(hours=1)
    for first in range(0, count, batch):
        results = publisher.publish_many(
            TokenRevoked(issuer="idp", jti=f"jti-{n}", sub=f"user-{n % 7}", expires_at=exp)
            for n in range(first, first + batch)
        )
        assert all(r.queued for r in results)
    print("queued", publisher.pending_count(), flush=True)
    threading.Event().wait()  # SIGKILLed here, outbox open, drainer retrying
    """
)
_DRAIN = textwrap.dedent(
    """
    import sys
    from producer import Publisher, PublisherSettings
    with Publisher(PublisherSettings.from_env()) as publisher:
        sys.exit(0 if publisher.wait_until_drained(timeout=float(sys.argv[1])) else 1)
    """
)


def test_publisher_sigkilled_while_the_broker_is_down_delivers_every_revocation_once_in_order(
    private_broker: LocalKafkaBroker, tmp_path: Path
) -> None:
    bootstrap = private_broker.bootstrap_servers
    ensure_topic(
        KafkaSettings(bootstrap_servers=(bootstrap,), topic=TOPIC),
        partitions=1,
        max_token_lifetime=3600,
    )
    private_broker.stop(keep_data=True)
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REVOCAST_TOPIC": TOPIC,
        "REVOCAST_EVENT_ISSUER": "identity-test",
        "REVOCAST_SIGNING_KEY": public_key_spec(EVENT_KEY),
        "REVOCAST_OUTBOX_PATH": str(tmp_path / "outbox.sqlite3"),
        "REVOCAST_ACK_TIMEOUT": "0.05",
        "REVOCAST_MAX_BLOCK": "1",
        # The killed process dies holding the drain lease; the drainer sends once it expires
        # (30 s by default), which is not what this test is about.
        "REVOCAST_OUTBOX_LEASE": "3",
    }
    doomed = subprocess.Popen(
        [sys.executable, "-c", _PUBLISH_THEN_HANG, str(EVENTS), str(BATCH)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert doomed.stdout is not None
        assert doomed.stdout.readline().split() == ["queued", str(EVENTS)]
        doomed.kill()
        assert doomed.wait(timeout=30) == -9
    finally:
        if doomed.poll() is None:
            doomed.kill()
        doomed.wait()
        if doomed.stdout is not None:
            doomed.stdout.close()

    drainer = subprocess.Popen([sys.executable, "-c", _DRAIN, "120"], env=env)
    try:
        private_broker.restart()
        assert drainer.wait(timeout=150) == 0
    finally:
        if drainer.poll() is None:
            drainer.kill()
            drainer.wait()

    codec = EventCodec(verifier=EventVerifier([EVENT_KEY.verification_key()]))
    records = read_records(bootstrap, TOPIC, EVENTS)
    jtis = [getattr(codec.decode(r.value, r.headers), "jti", None) for r in records]
    assert jtis == [f"jti-{n}" for n in range(EVENTS)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        end = consumer.end_offsets([TopicPartition(TOPIC, 0)])[TopicPartition(TOPIC, 0)]
    finally:
        consumer.close()
    assert end == EVENTS, "delivered more than once"
    record_figures(
        "publisher_sigkill_broker_down",
        events_sent=EVENTS,
        delivered=end,
        lost=EVENTS - len(set(jtis)),
        duplicates=end - EVENTS,
        in_order=int(jtis == sorted(jtis, key=lambda j: int(str(j).split("-")[1]))),
    )
