from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from producer import Publisher, PublishError, ensure_topic
from producer._outbox import ACK_RETENTION, Outbox
from revocast.localkafka import LocalKafkaBroker
from revocation_events import EncodedEvent, KafkaSettings, SigningKey
from tests._kafka_fixtures import MakeTopic
from tests.producer._support import read_records, verifying_codec
from tests.producer.conftest import MakeSettings


def record(n: int) -> tuple[uuid.UUID, EncodedEvent]:
    return uuid.uuid4(), EncodedEvent(
        key=f"k{n}".encode(), value=f"v{n}".encode(), headers=(("revocast-sig", b"s\x00"),)
    )


def test_rows_survive_reopening_in_append_order(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "outbox.sqlite3"
    items = [record(n) for n in range(5)]
    outbox = Outbox(path)
    outbox.append(items[:3])
    outbox.append(items[3:])
    outbox.close()

    reopened = Outbox(path)
    rows = reopened.head(10)
    assert [(r.event_id, r.record) for r in rows] == items
    assert [r.seq for r in rows] == sorted(r.seq for r in rows)
    reopened.close()


def test_delete_removes_only_the_given_rows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    seqs = outbox.append([record(n) for n in range(4)])
    outbox.delete(seqs[:2])
    assert outbox.count() == 2
    assert [r.seq for r in outbox.head(10)] == seqs[2:]
    outbox.close()


def test_acks_recorded_for_another_process_are_given_out_once(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    drainer, publisher = Outbox(path), Outbox(path)
    items = [record(n) for n in range(3)]
    ids = [event_id for event_id, _ in items]
    seqs = publisher.append(items)

    drainer.delete(seqs, [(ids[0], 1, 10), (ids[1], 1, 11)], now=1_000.0)
    assert publisher.count() == 0
    assert publisher.take_acks(ids) == {ids[0]: (1, 10), ids[1]: (1, 11)}
    assert publisher.take_acks(ids) == {}
    drainer.close()
    publisher.close()


def test_acks_nobody_collects_are_dropped_after_the_retention(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    stale, fresh = uuid.uuid4(), uuid.uuid4()
    outbox.delete([], [(stale, 0, 1)], now=1_000.0)
    outbox.delete([], [(fresh, 0, 2)], now=1_000.0 + ACK_RETENTION + 1)
    assert outbox.take_acks([stale, fresh]) == {fresh: (0, 2)}
    outbox.close()


def test_an_outbox_file_of_the_previous_version_keeps_its_rows_and_gains_the_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,"
        " record_key BLOB NOT NULL, record_value BLOB NOT NULL, headers TEXT NOT NULL)"
    )
    event_id = uuid.uuid4()
    db.execute(
        "INSERT INTO outbox (event_id, record_key, record_value, headers) VALUES (?, ?, ?, ?)",
        (str(event_id), b"k", b"v", "[]"),
    )
    db.commit()
    db.close()

    outbox = Outbox(path)
    assert [r.event_id for r in outbox.head(10)] == [event_id]
    assert outbox.claim_lease("me", now=0.0, until=30.0)
    assert outbox.lease() == ("me", 30.0)
    outbox.close()


def test_outbox_uses_wal_with_full_sync(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.db")
    assert outbox._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert outbox._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    outbox.close()


@pytest.mark.kafka
def test_queued_event_is_delivered_by_the_next_publisher(
    make_settings: MakeSettings,
    kafka_bootstrap: str,
    make_topic: MakeTopic,
    signing_key: SigningKey,
) -> None:
    topic = make_topic(partitions=3)
    with Publisher(make_settings(topic=topic, ack_timeout=0.05, max_block=0.5)) as offline:
        queued = offline.block_subject("alice", reason="offline")
        assert queued.queued
        assert queued.partition is None
        assert offline.pending_count() == 1

    online_settings = make_settings(bootstrap=kafka_bootstrap, topic=topic)
    with Publisher(online_settings) as online:
        assert online.wait_until_drained(timeout=30)
    (rec,) = read_records(kafka_bootstrap, topic, 1)
    event = verifying_codec(signing_key).decode(rec.value, rec.headers)
    assert event.id == queued.event_id
    assert event.reason == "offline"


_DRAINER = textwrap.dedent(
    """
    import sys
    from producer import Publisher, PublisherSettings
    with Publisher(PublisherSettings.from_env()) as publisher:
        sys.exit(0 if publisher.wait_until_drained(timeout=float(sys.argv[1])) else 1)
    """
)


@pytest.mark.kafka
def test_revocations_published_during_an_outage_arrive_once_in_order_after_restart(
    private_broker: LocalKafkaBroker,
    make_settings: MakeSettings,
    signing_key: SigningKey,
    tmp_path: Path,
) -> None:
    bootstrap = private_broker.bootstrap_servers
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic="revocations")
    ensure_topic(kafka, partitions=1, max_token_lifetime=3600)
    private_broker.stop(keep_data=True)

    settings = make_settings(
        bootstrap=bootstrap, topic="revocations", ack_timeout=0.02, max_block=1
    )
    exp = datetime.now(UTC) + timedelta(hours=1)
    with Publisher(settings) as publisher:
        results = [
            publisher.revoke_token(f"jti-{n}", expires_at=exp, sub=f"user-{n % 7}")
            for n in range(100)
        ]
        assert all(r.queued for r in results)
        assert publisher.pending_count() == 100

    # A new process resumes the outbox before the broker is back, as after a deploy.
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "REVOCAST_TOPIC": "revocations",
        "REVOCAST_EVENT_ISSUER": "identity-test",
        "REVOCAST_SIGNING_KEY": "unused:hmac:" + "A" * 43,
        "REVOCAST_OUTBOX_PATH": str(settings.outbox_path),
        "REVOCAST_MAX_BLOCK": "1",
    }
    drainer = subprocess.Popen([sys.executable, "-c", _DRAINER, "120"], env=env)
    try:
        private_broker.restart()
        assert drainer.wait(timeout=150) == 0
    finally:
        if drainer.poll() is None:
            drainer.kill()
            drainer.wait()

    records = read_records(bootstrap, "revocations", 100)
    codec = verifying_codec(signing_key)
    events = [codec.decode(r.value, r.headers) for r in records]
    # Signed by the first publisher's key, although the second process has another.
    assert [e.id for e in events] == [r.event_id for r in results]
    assert [getattr(e, "jti", None) for e in events] == [f"jti-{n}" for n in range(100)]


def test_a_corrupt_outbox_file_is_a_publish_error_naming_the_file(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(b"not a database, " * 512)

    with pytest.raises(PublishError, match=r"outbox\.sqlite3"):
        Publisher(make_settings(outbox_path=path))


def test_an_outbox_that_cannot_be_written_is_a_publish_error(
    offline_publisher: Publisher,
) -> None:
    outbox = offline_publisher._outbox
    assert outbox is not None
    outbox._db.execute("PRAGMA query_only=ON")  # what a full disk or a read-only file gives

    with pytest.raises(PublishError, match="outbox"):
        offline_publisher.block_subject("alice")
    assert offline_publisher.pending_count() == 0
