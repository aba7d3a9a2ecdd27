"""Time to ready of the SDK's two bootstrap modes: log replay vs the compacted state topic.

``python -m bench.bench_bootstrap_modes [--events N] [--repeat R]`` (default 100,000 events).
Uses ``$KAFKA_BOOTSTRAP_SERVERS`` or starts a local broker.

The log is built the way it looks after an hour of normal operation, where most revocations
no longer matter (all signed, 3 partitions, written with raw kafka-python from a template
event, like ``bench.bootstrap``):

* 80 % revoke jtis of short-lived tokens that have since expired: record timestamps spread
  over the last 50 minutes, ``expires_at`` 10 minutes after. They are inside the SDK's
  replay window (``max_token_lifetime`` = 1 h), so log replay reads and verifies each one;
  the worker drops them as expired, so they never reach the state topic.
* 10 % bump ``min_version`` of 1,000 subjects, in random order: each subject ends with
  one rule; the state topic holds only the bumps that raised the version when they
  arrived (about ln(k) per subject before compaction, one after).
* 10 % revoke jtis that are still live (one hour): one state record each.

The streams worker (a real ``faust`` process) builds the state topic and is stopped before
the measurements, so both modes read a fixed log. Each mode is measured ``--repeat`` times
with a fresh SDK; the state mode must end with the same ``state.snapshot()`` as the log
replay.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition

from bench._common import EVENT_KEY, kafka_broker, settings, temp_topic
from consumer_sdk import Revocast
from consumer_sdk._settings import derived_topics
from revocation_events import (
    SIGNATURE_HEADER,
    Event,
    EventCodec,
    EventSigner,
    KafkaSettings,
    SubjectVersionBumped,
    TokenRevoked,
    public_key_spec,
)

__all__ = ["main"]

_LIFETIME = 3600.0
_SUBJECTS = 1000
_REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Measurement:
    mode: str
    seconds: list[float]
    records: int
    """Records the SDK read to get ready (state records + log records)."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


# -- the log ------------------------------------------------------------------------------


class _Template:
    """Signs copies of one encoded event with its id and one text field substituted, much
    faster than encoding each event (the bench measures reading, not writing)."""

    _ID = uuid.UUID(int=0)

    def __init__(self, event: Event, mark: str) -> None:
        value = EventCodec(signer=EventSigner(EVENT_KEY)).encode(event).value
        self._head, self._tail = value.split(str(self._ID).encode())
        self._mark = mark.encode()

    def record(self, n: int, text: str) -> tuple[bytes, list[tuple[str, bytes]]]:
        body = self._head + str(uuid.uuid4()).encode() + self._tail
        value = body.replace(self._mark, text.encode())
        return value, [(SIGNATURE_HEADER, EVENT_KEY.sign(value))]


def _produce(kafka: KafkaSettings, events: int, rng: random.Random) -> dict[str, int]:
    now = datetime.now(UTC)
    # Past occurred_at + max_token_lifetime: the SDK keeps a rule until the later of the two,
    # so the winner alone (state mode) and every event (log mode) give the same deadline.
    later = now + timedelta(hours=2)
    expired = int(events * 0.8)
    bumps = int(events * 0.1)
    live = events - expired - bumps
    gone = _Template(
        TokenRevoked(
            id=_Template._ID,
            issuer="bench",
            jti="JTIMARK",
            occurred_at=now - timedelta(minutes=50),
            expires_at=now - timedelta(minutes=40),
        ),
        "JTIMARK",
    )
    alive = _Template(
        TokenRevoked(id=_Template._ID, issuer="bench", jti="JTIMARK", expires_at=later),
        "JTIMARK",
    )
    producer = KafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        linger_ms=50,
        batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    versions = list(range(1, bumps + 1))
    rng.shuffle(versions)
    start_ms = int((now - timedelta(minutes=50)).timestamp() * 1000)
    span_ms = 45 * 60 * 1000
    try:
        for n in range(expired):
            value, headers = gone.record(n, f"gone-{n:09d}")
            # An hour of history: timestamps inside the SDK's replay window.
            ts = start_ms + span_ms * n // max(expired, 1)
            producer.send(kafka.topic, key=None, value=value, headers=headers, timestamp_ms=ts)
        for n, version in enumerate(versions):
            sub = f"user-{n % _SUBJECTS}"
            enc = codec.encode(
                SubjectVersionBumped(
                    issuer="bench",
                    sub=sub,
                    min_version=version,
                    expires_at=later,
                )
            )
            producer.send(kafka.topic, key=enc.key, value=enc.value, headers=list(enc.headers))
        for n in range(live):
            value, headers = alive.record(n, f"live-{n:09d}")
            producer.send(kafka.topic, key=None, value=value, headers=headers)
        producer.flush(900)
    finally:
        producer.close()
    return {"expired jti": expired, "version bumps": bumps, "live jti": live}


# -- the worker -------------------------------------------------------------------------


@contextmanager
def _worker(
    kafka: KafkaSettings, workdir: Path, offline: bool
) -> Iterator[subprocess.Popen[bytes] | None]:
    """The faust worker (``None`` when ``offline``); its topics are deleted afterwards."""
    from revocast.cli._streams import worker_argv

    app_id = f"{kafka.topic}-streams"
    env = {
        **os.environ,
        "PYTHONPATH": str(_REPO),
        "KAFKA_BOOTSTRAP_SERVERS": ",".join(kafka.bootstrap_servers),
        "REVOCAST_TOPIC": kafka.topic,
        "REVOCAST_EVENT_KEYS": public_key_spec(EVENT_KEY),
        "REVOCAST_STREAMS_APP_ID": app_id,
        "REVOCAST_STREAMS_DATA_DIR": str(workdir / "data"),
        "REVOCAST_STREAMS_TICK_SECONDS": "0.5",
        "REVOCAST_STREAMS_COMMIT_INTERVAL_SECONDS": "1",
    }
    proc = None
    if not offline:
        with (workdir / "worker.log").open("ab") as log:
            proc = subprocess.Popen(
                worker_argv([]), env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT
            )
    try:
        yield proc
    finally:
        if proc is not None:
            _stop(proc)
        admin = KafkaAdminClient(bootstrap_servers=list(kafka.bootstrap_servers))
        try:
            extra = [f"{kafka.topic}.{s}" for s in ("state", "stats", "alerts")] + [
                f"{app_id}-{s}"
                for s in ("ticks", "rules-changelog", "windows-changelog", "__assignor-__leader")
            ]
            with suppress(Exception):
                admin.delete_topics(extra, timeout_ms=30_000)
        finally:
            admin.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _build_offline(kafka: KafkaSettings) -> tuple[float, int]:
    """The worker's own logic (``streams._processor``) without faust: read the log once,
    write what the worker would write to the state topic, then one tick per partition for
    the markers. For sizes the faust worker takes too long with on a small machine."""
    from streams import StreamsSettings
    from streams._processor import Processor
    from streams._topics import prepare_topics

    streams = StreamsSettings(
        kafka=kafka,
        app_id=f"{kafka.topic}-streams",
        verification_keys=(EVENT_KEY.verification_key(),),
    )
    prepare_topics(streams)
    start = time.perf_counter()
    ends = _log_ends(kafka)
    processor = Processor(
        codec=streams.codec(), log_topic=kafka.topic, rules={}, windows={}, clock=time.time
    )
    consumer = KafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers), enable_auto_commit=False
    )
    producer = KafkaProducer(
        bootstrap_servers=list(kafka.bootstrap_servers), linger_ms=50, batch_size=1024 * 1024
    )
    written = 0

    def send(outputs: list[Any]) -> None:
        nonlocal written
        for out in outputs:
            if out.sink == "state":
                producer.send(
                    streams.state_topic,
                    key=out.key,
                    value=out.value,
                    partition=out.partition,
                    headers=list(out.headers),
                )
                written += 1

    try:
        tps = [TopicPartition(kafka.topic, p) for p in ends]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        positions = dict.fromkeys(ends, 0)
        for p in ends:
            # As the worker's first ticks after start (with an empty table, publish nothing).
            send(processor.on_tick(p))
        while any(positions[p] < end for p, end in ends.items()):
            for tp, batch in consumer.poll(timeout_ms=500, max_records=50_000).items():
                for r in batch:
                    send(
                        processor.on_record(
                            partition=tp.partition,
                            offset=r.offset,
                            timestamp=r.timestamp / 1000,
                            value=r.value,
                            headers=r.headers,
                        )
                    )
                positions[tp.partition] = batch[-1].offset + 1
        for p in ends:
            send(processor.on_tick(p))
        producer.flush(600)
    finally:
        producer.close()
        consumer.close()
    return time.perf_counter() - start, written


def _read_state(kafka: KafkaSettings) -> tuple[dict[int, int], int]:
    """The state topic's last markers and its record count."""
    consumer = KafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers), enable_auto_commit=False
    )
    topic = derived_topics(kafka.topic)[0]
    markers: dict[int, int] = {}
    count = 0
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        stop = consumer.end_offsets(tps, timeout_ms=10_000)
        while any(consumer.position(tp, timeout_ms=10_000) < stop[tp] for tp in tps):
            for tp, batch in consumer.poll(timeout_ms=500, max_records=50_000).items():
                count += len(batch)
                for record in batch:
                    if record.key.startswith(b"__offsets__:"):
                        markers[tp.partition] = int(record.value.split(b'"offset":')[1][:-1])
    finally:
        consumer.close()
    return markers, count


def _log_ends(kafka: KafkaSettings) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=list(kafka.bootstrap_servers))
    try:
        tps = [TopicPartition(kafka.topic, p) for p in consumer.partitions_for_topic(kafka.topic)]
        return {tp.partition: end for tp, end in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def _wait_for_worker(
    kafka: KafkaSettings, proc: subprocess.Popen[bytes], timeout: float
) -> tuple[float, int]:
    """Until the group's committed offsets reach the log's end, then until the markers do;
    return the seconds it took and the state topic's record count."""
    ends = _log_ends(kafka)
    admin = KafkaAdminClient(bootstrap_servers=list(kafka.bootstrap_servers))
    start = time.perf_counter()
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worker did not catch up within {timeout:.0f}s")
            group = f"{kafka.topic}-streams"
            committed = {
                tp.partition: meta.offset
                for tp, meta in admin.list_group_offsets(group).get(group, {}).items()
                if tp.topic == kafka.topic
            }
            if all(committed.get(p, 0) >= end for p, end in ends.items()):
                break
            time.sleep(1.0)
    finally:
        admin.close()
    while True:
        markers, count = _read_state(kafka)
        if all(markers.get(p, -1) >= end - 1 for p, end in ends.items() if end):
            return time.perf_counter() - start, count
        if time.monotonic() > deadline:
            raise RuntimeError(f"state markers {markers} behind the log ends {ends}")
        time.sleep(1.0)


# -- the measurement --------------------------------------------------------------------


def _bootstrap(kafka: KafkaSettings, mode: Literal["log", "state"]) -> tuple[float, Any, int]:
    start = time.perf_counter()
    with Revocast(
        settings(kafka=kafka, bootstrap=mode, max_token_lifetime=_LIFETIME, heartbeat_interval=0)
    ) as rc:
        if not rc.wait_until_ready(1800):
            raise RuntimeError(f"{mode} bootstrap not ready within 30 min")
        seconds = time.perf_counter() - start
        stats = rc.stats()
        records = sum(
            sum(stats[k].values()) for k in ("applied", "unchanged", "skipped")
        )  # every record the sink saw
        if mode == "state" and stats["bootstrap"]["mode"] != "state":
            raise RuntimeError(f"state bootstrap fell back: {stats['bootstrap']}")
        return seconds, rc.state.snapshot(), records


def run(bootstrap: str, events: int, repeat: int, offline: bool) -> list[Measurement]:
    rng = random.Random(1)
    with (
        temp_topic(bootstrap, "bench-modes") as kafka,
        tempfile.TemporaryDirectory() as tmp,
    ):
        t = time.perf_counter()
        mix = _produce(kafka, events, rng)
        print(f"log: {events:,} events ({mix}) written in {time.perf_counter() - t:.1f}s")
        with _worker(kafka, Path(tmp), offline) as proc:
            if proc is None:
                took, state_records = _build_offline(kafka)
                how = "by the worker's processor without faust (--offline-state)"
            else:
                took, state_records = _wait_for_worker(kafka, proc, timeout=3600)
                _stop(proc)
                how = "by the faust worker, stopped for the measurements"
            print(f"state topic: {state_records:,} records, built {how} in {took:.1f}s")
            results: dict[str, list[float]] = {"log": [], "state": []}
            seen: dict[str, int] = {}
            snapshots: dict[str, Any] = {}
            for _ in range(repeat):
                for mode in ("log", "state"):
                    seconds, snapshot, records = _bootstrap(kafka, mode)
                    results[mode].append(seconds)
                    seen[mode] = records
                    snapshots[mode] = snapshot
        if snapshots["state"] != snapshots["log"]:
            raise RuntimeError("the two modes ended in different states")
        return [Measurement(mode, results[mode], seen[mode]) for mode in ("log", "state")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_bootstrap_modes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--offline-state",
        action="store_true",
        help="build the state topic with the worker's processor in this process, not faust",
    )
    args = parser.parse_args(argv)
    with kafka_broker() as bootstrap:
        rows = run(bootstrap, args.events, args.repeat, args.offline_state)
    print(f"\n{'mode':<6} {'records read':>12} {'ready s (median)':>17} {'runs':>24}")
    for row in rows:
        runs = ", ".join(f"{s:.2f}" for s in row.seconds)
        print(f"{row.mode:<6} {row.records:>12,} {row.median:>17.2f} {runs:>24}")
    log, state = rows
    print(f"\nstate bootstrap is {log.median / state.median:.1f}x faster; same snapshot: yes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
