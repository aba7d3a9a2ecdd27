"""The snapshotter: packed, signed snapshots of the revocation log in ``<log>.snapshots``.

It runs inside the streams worker (a thread that :mod:`streams.app` starts when
``REVOCAST_SNAPSHOT_SIGNING_KEY`` is set). :mod:`consumer_sdk._snapshot` defines the format
and what a snapshot promises; this module keeps the rules
(:mod:`streams._snapshot_rules`) and writes them.

Why it reads the log itself rather than the worker's ``rules`` table: that table keeps one
winning event per rule (what the state topic republishes, one record per event), while a
snapshot must hold what an SDK's merge of *every* event gives (for a jti revoked twice, the
earliest revoked-at and the latest deadline). So the snapshotter is a broadcast kafka-python
consumer like an SDK, outside faust's consumer group, applying each verified event to
:class:`PartitionRules`, which merge as ``RevocationState`` does but keyed by strings (an
SDK's jti fingerprints are per-process hashes).

* It writes only the partitions faust assigns to this worker (all of them when run on its
  own), so two workers never write one partition.
* A snapshot must hold every rule still in force, including blocks and revoked keys whose
  log records retention deleted long ago. So each log partition starts from the first of:

  1. its own latest snapshot, verified with its signing key or one of
     ``snapshot_previous_keys`` (a rotation), then the log after the manifest's offset;
  2. the log from offset 0, when the partition's log start offset is 0: the log is
     delete-only (``revocast status`` flags compaction on it), and only retention or
     ``DeleteRecords`` remove records, both by moving the start offset, so nothing before
     any record is missing;
  3. the state topic, as the worker's processor seeds from it: the partition's last offset
     marker (:func:`streams._topics.resume_offsets`), then its rule records up to its end
     (:func:`streams._seed.read_state`: they include every effect the marker covers),
     verified with the event keys, then the log after the marker. By
     :mod:`streams._rules`, one winner per rule merges to what every event does;
  4. none: the partition is *held*, logged and counted (``holds.<reason>``), and no
     snapshot of it is written, since the retained log alone would claim completeness for
     rules it cannot know. SDKs fall back to the state topic or the log. A hold is retried
     every ``snapshot_interval_seconds`` (and on reconnecting), except ``unknown_key``, which
     needs a restart with the key.
* At most every ``snapshot_interval_seconds``, each owned partition whose rules changed (its
  log moved, or rules aged out) gets a new generation: chunks, flushed, then the signed
  manifest listing their offsets and hashes, then tombstones for the chunks of the generation
  it replaced and for chunks of a write that was interrupted. The generation it replaced may
  be another worker's (a rebalance moved the partition): when a snapshot partition's end is
  not where this snapshotter's last write left it, it first reads that partition's tail to
  find the last manifest and unfinished writes there
  (:func:`consumer_sdk._snapshot_reader.read_tails`).
* Snapshots name the incarnation of the log they come from (its topic id). A log deleted and
  recreated under the same name is noticed before each write and on reconnecting: the rules
  of the old one are dropped and the new one is replayed from its start (its own older
  snapshots are refused as of another incarnation).
* Chunks are written whole every time: with 1M live jtis a snapshot is ~37 MB, so the
  interval bounds the write load (the topic is compacted; an SDK reads only the chunks the
  latest manifest lists, however much the active segment still holds).
* Memory: every live rule with its strings, ~150 bytes per jti.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic
from kafka.errors import KafkaError

from consumer_sdk._snapshot import (
    DEFAULT_CHUNK_BYTES,
    ChunkRef,
    Manifest,
    chunk_key,
    manifest_key,
    sign_manifest,
)
from consumer_sdk._snapshot_reader import SnapshotRead, covers, read_snapshots, read_tails
from consumer_sdk._snapshot_reader import topic_id as current_topic_id
from revocation_events import (
    SIGNATURE_HEADER,
    EventVerifier,
    MalformedEventError,
    SigningKey,
    closing_on_failure,
)
from streams._seed import read_state
from streams._settings import StreamsSettings
from streams._snapshot_rules import PartitionRules
from streams._topics import StreamsError, cluster_replication, resume_offsets, state_topic_config

__all__ = ["Snapshotter", "write_snapshot"]

logger = logging.getLogger("streams")

_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0


# -- writing ---------------------------------------------------------------------------------


def write_snapshot(
    producer: Any,
    *,
    topic: str,
    log_topic: str,
    partition: int,
    offset: int,
    generation: int,
    rules: PartitionRules,
    key: SigningKey,
    created_at: float,
    topic_id: uuid.UUID | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    timeout: float = 60.0,
) -> Manifest:
    """Write one snapshot generation of ``partition``: its chunks, then (once they are
    acknowledged, so the manifest can list their offsets) the signed manifest.
    ``topic_id``: the id of the log's incarnation the rules come from
    (:func:`consumer_sdk._snapshot_reader.topic_id`); SDKs that know the log's id refuse a
    manifest without it."""
    return _send_snapshot(
        producer,
        topic=topic,
        log_topic=log_topic,
        partition=partition,
        offset=offset,
        generation=generation,
        rules=rules,
        key=key,
        created_at=created_at,
        topic_id=topic_id,
        chunk_bytes=chunk_bytes,
        timeout=timeout,
    )[0]


def _send_snapshot(
    producer: Any,
    *,
    topic: str,
    log_topic: str,
    partition: int,
    offset: int,
    generation: int,
    rules: PartitionRules,
    key: SigningKey,
    created_at: float,
    topic_id: uuid.UUID | None,
    chunk_bytes: int,
    timeout: float,
) -> tuple[Manifest, int]:
    """:func:`write_snapshot`, and the offset of the manifest record."""
    data = rules.chunks(chunk_bytes)
    sent = [
        producer.send(topic, key=chunk_key(partition, generation, i), value=d, partition=partition)
        for i, d in enumerate(data)
    ]
    producer.flush(timeout)
    refs = tuple(
        ChunkRef(future.get(timeout).offset, len(d), hashlib.sha256(d).hexdigest())
        for future, d in zip(sent, data, strict=True)
    )
    manifest = Manifest(
        topic=log_topic,
        partition=partition,
        offset=offset,
        generation=generation,
        created_at=created_at,
        max_token_lifetime=rules.lifetime,
        rules=len(rules),
        chunks=refs,
        topic_id=topic_id,
    )
    value = manifest.encode()
    sent_manifest = producer.send(
        topic,
        key=manifest_key(partition),
        value=value,
        partition=partition,
        headers=[sign_manifest(value, key)],
    )
    return manifest, sent_manifest.get(timeout).offset


def _tombstone(producer: Any, topic: str, partition: int, keys: Iterable[bytes]) -> Any:
    """Send tombstones for ``keys``; return the future of the last one (``None``: none)."""
    future = None
    for key in keys:
        future = producer.send(topic, key=key, value=None, partition=partition)
    return future


# -- the snapshotter ----------------------------------------------------------------------------


class Snapshotter:
    """Keeps :class:`PartitionRules` per log partition and writes their snapshots.

    :meth:`start` runs it in a daemon thread until :meth:`close`, reconnecting after errors
    with backoff and keeping its rules; :meth:`catch_up` runs it in the caller's thread until
    the log's current end, then writes (tests and benchmarks).
    """

    def __init__(
        self,
        settings: StreamsSettings,
        *,
        owned: Iterable[int] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        key = settings.snapshot_signing_key
        if key is None:
            raise StreamsError("snapshots need a signing key (REVOCAST_SNAPSHOT_SIGNING_KEY)")
        self._settings = settings
        self._key = key
        self._verifier = EventVerifier([key.verification_key()])
        # Previous keys only read this snapshotter's own earlier generations (a rotation).
        self._previous = (
            EventVerifier(settings.snapshot_previous_keys)
            if settings.snapshot_previous_keys
            else None
        )
        self._codec = settings.codec()
        self._clock = clock
        self._rules: dict[int, PartitionRules] = {}
        self._offsets: dict[int, int] = {}
        """Per log partition, the last offset applied (its beginning - 1 before any)."""
        self._written: dict[int, Manifest] = {}
        self._resign: set[int] = set()
        """Log partitions whose latest snapshot a previous key signed: SDKs that trust only
        the current key refuse it, so it is rewritten even if nothing changed."""
        self._held: dict[int, str] = {}
        """Log partitions with no complete source (module docstring), and why: no snapshot
        of them is written."""
        self._unverifiable: dict[int, int] = {}
        """Per log partition with a record signed by a key this snapshotter does not know,
        the last offset a snapshot may cover: the one before that record."""
        self._garbage: dict[int, list[bytes]] = {}
        """Per log partition, chunk keys to tombstone after its next generation."""
        self._ends: dict[int, int] = {}
        """Per snapshot partition, its end offset after this snapshotter's last write: if it
        moved, another writer wrote there (a rebalance) and its generation must be found."""
        self._floor: dict[int, int] = {}
        """Per snapshot partition, the highest generation another writer left there."""
        self._log_tps: dict[int, TopicPartition] = {}
        self._topic_id: uuid.UUID | None = None
        """The id of the log's incarnation the rules come from."""
        self._owned: frozenset[int] | None = None if owned is None else frozenset(owned)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.counters: Counter[str] = Counter()

    def own(self, partitions: Iterable[int] | None) -> None:
        """Write snapshots of these log partitions only (``None``: all). Any thread."""
        self._owned = None if partitions is None else frozenset(partitions)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"revocast-snapshotter[{self._settings.log_topic}]", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("the snapshotter did not stop within %.1fs", timeout)

    def catch_up(self, timeout: float) -> dict[int, Manifest]:
        """Apply the log up to its current end, write every owned partition that changed,
        and return the latest manifest of each."""
        deadline = time.monotonic() + timeout
        consumer, producer = self._open()
        try:
            tps = self._prepare(consumer, producer)
            tps = {p: tp for p, tp in tps.items() if p not in self._held}
            ends = consumer.end_offsets(list(tps.values()), timeout_ms=self._timeout_ms)
            while any(consumer.position(tp) < ends[tp] for tp in tps.values()):
                if time.monotonic() > deadline:
                    raise StreamsError(f"the snapshotter did not catch up within {timeout:.0f}s")
                self._poll(consumer)
            self._write(consumer, producer)
            return dict(self._written)
        finally:
            self._close_clients(consumer, producer)

    @property
    def _timeout_ms(self) -> int:
        return self._settings.kafka.request_timeout_ms

    def _run(self) -> None:
        backoff = _BACKOFF_MIN
        interval = self._settings.snapshot_interval_seconds
        while not self._stop.is_set():
            clients: tuple[Any, Any] | None = None
            try:
                clients = self._open()
                consumer, producer = clients
                self._prepare(consumer, producer)
                next_write = time.monotonic()
                next_retry = next_write + interval
                while not self._stop.is_set():
                    self._poll(consumer)
                    if self._held and time.monotonic() >= next_retry:
                        self._retry_held(consumer, producer)
                        next_retry = time.monotonic() + interval
                    if time.monotonic() >= next_write:
                        self._write(consumer, producer)
                        next_write = time.monotonic() + interval
                        backoff = _BACKOFF_MIN
            except Exception as exc:  # the thread must survive anything; log and retry
                logger.warning(
                    "snapshotter interrupted (%s: %s); retrying in %.1fs",
                    type(exc).__name__,
                    exc,
                    backoff,
                )
                self.counters["interruptions"] += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                if clients is not None:
                    self._close_clients(*clients)

    def _open(self) -> tuple[Any, Any]:
        kafka = self._settings.kafka
        config = kafka.client_config(KafkaConsumer.DEFAULT_CONFIG)
        try:
            consumer = closing_on_failure(
                KafkaConsumer,
                {
                    "allow_auto_create_topics": False,
                    "auto_offset_reset": "earliest",
                    **config,
                    "group_id": None,
                    "enable_auto_commit": False,
                },
            )
        except KafkaError as exc:
            raise StreamsError(f"cannot connect to Kafka: {exc}") from exc
        try:
            producer = closing_on_failure(
                KafkaProducer,
                {**kafka.client_config(KafkaProducer.DEFAULT_CONFIG), "linger_ms": 5},
            )
        except BaseException:
            consumer.close(timeout_ms=1000)
            raise
        return consumer, producer

    @staticmethod
    def _close_clients(consumer: Any, producer: Any) -> None:
        for client in (producer, consumer):
            try:
                client.close(timeout=5) if client is producer else client.close(timeout_ms=1000)
            except Exception:
                logger.debug("closing a snapshotter client failed", exc_info=True)

    def _prepare(self, consumer: Any, producer: Any) -> dict[int, TopicPartition]:
        """Create the snapshot topic if needed, resume new partitions from their latest
        snapshot (or the log's beginning), and position the consumer on the log."""
        s = self._settings
        parts = consumer.partitions_for_topic(s.log_topic)
        if not parts:
            raise StreamsError(f"log topic {s.log_topic!r} does not exist")
        _ensure_topic(s, len(parts))
        current = current_topic_id(consumer, s.log_topic)
        if self._rules and current != self._topic_id:
            self._forget(current)
        self._topic_id = current
        tps = {p: TopicPartition(s.log_topic, p) for p in sorted(parts)}
        self._log_tps = tps
        new = [p for p in tps if p not in self._rules]
        if new:
            self._resume(consumer, producer, {p: tps[p] for p in new})
        self._position(consumer)
        return tps

    def _forget(self, current: uuid.UUID | None) -> None:
        """The log was deleted and recreated: its offsets now mean other records, and the
        rules of the old one must not reach snapshots of the new one. Start over."""
        logger.warning(
            "log topic %r was recreated (topic id %s, was %s): replaying it from its start",
            self._settings.log_topic,
            current,
            self._topic_id,
        )
        self.counters["log_recreated"] += 1
        self._rules.clear()
        self._offsets.clear()
        self._written.clear()
        self._resign.clear()
        self._unverifiable.clear()
        self._held.clear()
        self._ends.clear()  # the next write finds the old generations by reading the tails

    def _position(self, consumer: Any) -> None:
        """Assign the log to ``consumer``, each partition after its last applied offset
        (held partitions left out)."""
        tps = {p: tp for p, tp in self._log_tps.items() if p not in self._held}
        consumer.assign(list(tps.values()))
        for p, tp in tps.items():
            consumer.seek(tp, self._offsets[p] + 1)

    def _retry_held(self, consumer: Any, producer: Any) -> None:
        """Look again for a complete source of the held partitions that may have one now
        (the processor has written its first marker, or caught up with the log start)."""
        retry = {
            p: self._log_tps[p]
            for p, why in self._held.items()
            if why != "unknown_key" and p in self._log_tps
        }
        if retry:
            self._resume(consumer, producer, retry)
            self._position(consumer)

    def _resume(self, consumer: Any, producer: Any, tps: dict[int, TopicPartition]) -> None:
        """Start these log partitions from the first complete source (module docstring)."""
        s = self._settings
        bounds = self._bounds(consumer, list(tps))
        read = self._read_snapshots(consumer, list(tps), bounds, self._verifier)
        rotated = [p for p in tps if read.refused.get(p) == "unknown_key"]
        if rotated and self._previous is not None:
            again = self._read_snapshots(consumer, rotated, bounds, self._previous)
            for p in rotated:
                read.orphans[p] = again.orphans.get(p, [])
                if p in again.accepted:
                    read.accepted[p] = again.accepted[p]
                    self._resign.add(p)
                else:
                    read.refused[p] = again.refused.get(p, "missing")
        source: dict[int, str] = {}
        rest = []
        for p in tps:
            self._garbage[p] = read.orphans.get(p, [])
            accepted = read.accepted.get(p)
            if accepted is not None:
                manifest, chunks = accepted
                rules = PartitionRules.from_chunks(chunks, s.max_token_lifetime, self._clock)
                self._start(p, rules, manifest.offset, "snapshot")
                self._written[p] = manifest
                source[p] = "snapshot"
                continue
            reason = read.refused.get(p, "missing")
            if reason != "missing":
                logger.warning("own snapshot of log partition %d unusable (%s)", p, reason)
            if bounds[p][0] == 0:
                self._start(p, PartitionRules(s.max_token_lifetime, self._clock), -1, "log")
                source[p] = "log"
            else:
                rest.append(p)
        if rest:
            source.update(self._from_state(consumer, rest))
        logger.info("snapshotter resumed log partitions: %s", source)

    def _read_snapshots(
        self,
        consumer: Any,
        partitions: list[int],
        bounds: dict[int, tuple[int, int]],
        verifier: EventVerifier,
    ) -> SnapshotRead:
        s = self._settings
        return read_snapshots(
            consumer,
            s.snapshot_topic,
            s.log_topic,
            partitions,
            verifier,
            bounds=bounds,
            topic_id=self._topic_id,
            lifetime=s.max_token_lifetime,
            timeout_ms=self._timeout_ms,
            poll_timeout_ms=500,
            stop=self._stop,
        )

    def _bounds(self, consumer: Any, partitions: list[int]) -> dict[int, tuple[int, int]]:
        """Per log partition, its first offset and its end."""
        tps = [self._log_tps[p] for p in partitions]
        begins = consumer.beginning_offsets(tps, timeout_ms=self._timeout_ms)
        ends = consumer.end_offsets(tps, timeout_ms=self._timeout_ms)
        return {tp.partition: (begins[tp], ends[tp]) for tp in tps}

    def _from_state(self, consumer: Any, partitions: list[int]) -> dict[int, str]:
        """Start these log partitions, whose log lost its first records, from the state
        topic; hold those it cannot start. Returns each one's source."""
        s = self._settings
        parts = consumer.partitions_for_topic(s.state_topic)
        if not parts or len(parts) != len(self._log_tps):
            for p in partitions:
                found = f"{len(parts)} partitions" if parts else "does not exist"
                self._hold(p, "no_state_topic", f"state topic {s.state_topic!r} {found}")
            return dict.fromkeys(partitions, "held")
        try:
            resumes = resume_offsets(s, partitions, log_resume=False)
            markers = {p: r.marker for p, r in resumes.items()}
            # Asked after the markers: a live processor may have marked past an older end.
            bounds = self._bounds(consumer, partitions)
            usable = [
                p for p in partitions if (m := markers.get(p)) is not None and covers(m, bounds[p])
            ]
            records = read_state(s, usable, topic_id=self._topic_id)
        except StreamsError as exc:
            for p in partitions:
                self._hold(p, "state_unreadable", str(exc))
            return dict.fromkeys(partitions, "held")
        source = {}
        for p in partitions:
            marker = markers.get(p)
            if marker is None:
                self._hold(p, "no_marker", f"state topic {s.state_topic!r} has no offset marker")
            elif p not in usable:
                begin, end = bounds[p]
                self._hold(
                    p,
                    "marker_outside_log",
                    f"the state topic's marker {marker} is outside the log's {begin}..{end}",
                )
            elif p not in records:
                # read_state left it out: its last marker names another incarnation of the log.
                self._hold(
                    p, "other_incarnation", "the state partition's marker is of a deleted log"
                )
            else:
                rules = PartitionRules(s.max_token_lifetime, self._clock)
                unknown = self._apply_state(rules, records[p])
                if unknown is not None:
                    self._hold(
                        p,
                        "unknown_key",
                        f"a state record is signed by a key this worker does not know ({unknown}): "
                        "restart it with that key in REVOCAST_EVENT_KEYS",
                    )
                else:
                    self._start(p, rules, marker, "state")
                    source[p] = "state"
                    continue
            source[p] = "held"
        return source

    def _apply_state(
        self, rules: PartitionRules, records: list[tuple[bytes, bytes | None]]
    ) -> MalformedEventError | None:
        """Merge state records (verified as log records are); stop at one signed by a key
        this snapshotter does not know: services that know it would enforce that rule."""
        for value, signature in records:
            headers = () if signature is None else ((SIGNATURE_HEADER, signature),)
            try:
                event = self._codec.decode(value, headers)
            except MalformedEventError as exc:
                if exc.reason == "unknown_key":
                    return exc
                self.counters[f"state_skipped.{exc.reason}"] += 1
                continue
            rules.apply(event)
        return None

    def _start(self, partition: int, rules: PartitionRules, offset: int, source: str) -> None:
        """Keep ``rules`` as those of ``partition`` up to ``offset`` of its log."""
        self._rules[partition] = rules
        self._offsets[partition] = offset
        self._held.pop(partition, None)
        self.counters[f"resumed.{source}"] += 1

    def _hold(self, partition: int, reason: str, detail: str) -> None:
        """No complete source for ``partition``: write no snapshot of it (module docstring)."""
        self._rules.pop(partition, None)
        self._offsets.pop(partition, None)
        if self._held.get(partition) == reason:
            return  # logged when it started
        self._held[partition] = reason
        self.counters[f"holds.{reason}"] += 1
        logger.log(
            logging.ERROR if reason == "unknown_key" else logging.WARNING,
            "log partition %d: no snapshot is written (%s): no trusted snapshot of it, its log "
            "lost its first records, and %s; SDKs bootstrap it from the state topic or the log",
            partition,
            reason,
            detail,
        )

    def _poll(self, consumer: Any) -> None:
        batch = consumer.poll(timeout_ms=500, max_records=10_000)
        for tp, records in batch.items():
            rules = self._rules[tp.partition]
            for record in records:
                try:
                    event = self._codec.decode(record.value, record.headers)
                except MalformedEventError as exc:
                    self.counters[f"skipped.{exc.reason}"] += 1
                    if exc.reason == "unknown_key":
                        self._hold_before(tp.partition, record.offset, exc)
                    continue
                rules.apply(event)
            last = records[-1].offset
            self._offsets[tp.partition] = min(last, self._unverifiable.get(tp.partition, last))

    def _hold_before(self, partition: int, offset: int, exc: MalformedEventError) -> None:
        """Services that already trust a key this snapshotter lacks (a rotation half rolled
        out) apply the record from the log; a snapshot covering it would make the ones
        bootstrapping from it skip the record. Snapshots stay before it (later records still
        go into them: an overlap is replayed harmlessly) until a restart with the key."""
        if partition in self._unverifiable:
            return
        self._unverifiable[partition] = offset - 1
        self.counters["unverifiable_holds"] += 1
        logger.error(
            "log partition %d: record %d is signed by a key this snapshotter does not know: "
            "snapshots stay before it until the worker restarts with the key in "
            "REVOCAST_EVENT_KEYS (%s)",
            partition,
            offset,
            exc,
        )

    def _write(self, consumer: Any, producer: Any) -> None:
        """A new generation of every owned partition whose rules changed since the last."""
        s = self._settings
        owned = self._owned
        due = []
        for p, rules in sorted(self._rules.items()):
            if owned is not None and p not in owned:
                continue
            pruned = rules.prune()
            last = self._written.get(p)
            if last is None or last.offset != self._offsets[p] or pruned or p in self._resign:
                due.append(p)
        if not due:
            return
        current = current_topic_id(consumer, s.log_topic)
        if current != self._topic_id:
            # Rules from the old log may have been merged with records of the new one.
            raise StreamsError(
                f"log topic {s.log_topic!r} was recreated (topic id {current}, "
                f"was {self._topic_id}): starting over"
            )
        self._take_over(consumer, due)
        if self._stop.is_set():
            return  # a take-over cut short may have missed another writer's generation
        sent = []
        for p in due:
            now = self._clock()
            last = self._written.get(p)
            generation = max(
                int(now * 1000),
                last.generation + 1 if last else 0,
                self._floor.get(p, -1) + 1,
            )
            manifest, manifest_offset = _send_snapshot(
                producer,
                topic=s.snapshot_topic,
                log_topic=s.log_topic,
                partition=p,
                offset=self._offsets[p],
                generation=generation,
                rules=self._rules[p],
                key=self._key,
                created_at=now,
                topic_id=self._topic_id,
                chunk_bytes=s.snapshot_chunk_bytes,
                timeout=60.0,
            )
            # Kept as garbage until the tombstones are acknowledged: a failed flush retries.
            stale = self._garbage.setdefault(p, [])
            if last is not None:
                stale += [chunk_key(p, last.generation, i) for i in range(len(last.chunks))]
            prefix = f"{p}/{generation}/".encode()
            keys = [k for k in dict.fromkeys(stale) if not k.startswith(prefix)]
            sent.append((p, manifest_offset, _tombstone(producer, s.snapshot_topic, p, keys)))
            self._written[p] = manifest
            self._resign.discard(p)
            self.counters["snapshots"] += 1
            logger.info(
                "snapshot of log partition %d up to offset %d: %d rules in %d chunks",
                p,
                manifest.offset,
                manifest.rules,
                len(manifest.chunks),
            )
        producer.flush(60)
        for p, manifest_offset, future in sent:
            self._ends[p] = (manifest_offset if future is None else future.get(60).offset) + 1
            del self._garbage[p]

    def _take_over(self, consumer: Any, partitions: list[int]) -> None:
        """Find what other writers left in these snapshot partitions since this snapshotter
        last wrote them: a rebalance moves log partitions between workers (and both may
        write one for a moment), and the generation the other one wrote last is replaced by
        the next one written here, so it must be tombstoned here too. Reads only the tails
        of partitions whose end moved, and leaves ``consumer`` positioned on the log."""
        s = self._settings
        tps = {p: TopicPartition(s.snapshot_topic, p) for p in partitions}
        ends = consumer.end_offsets(list(tps.values()), timeout_ms=self._timeout_ms)
        moved = [p for p, tp in tps.items() if ends[tp] != self._ends.get(p)]
        if not moved:
            return
        tails = read_tails(
            consumer,
            s.snapshot_topic,
            moved,
            timeout_ms=self._timeout_ms,
            poll_timeout_ms=500,
            stop=self._stop,
        )
        for p, tail in tails.items():
            self._garbage[p] = [*self._garbage.get(p, []), *tail.garbage]
            self._floor[p] = max(self._floor.get(p, -1), tail.generation)
        self._position(consumer)


def _ensure_topic(settings: StreamsSettings, partitions: int) -> None:
    """Create ``<log>.snapshots`` (compacted, one partition per log partition) if missing."""
    topic = settings.snapshot_topic
    admin = KafkaAdminClient(**settings.kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG))
    try:
        described = admin.describe_topics([topic])
        info = described[0] if described else None
        if info is not None and info.get("error_code", 0) == 0:
            existing = len(info.get("partitions") or ())
            if existing != partitions:
                raise StreamsError(
                    f"topic {topic!r} has {existing} partitions but the log has {partitions}"
                )
            return
        # The worker passes its settings resolved; a Snapshotter made on its own resolves here.
        settings = cluster_replication(admin, settings)
        config = {
            **state_topic_config(settings),
            # Whole generations are rewritten: roll segments often so compaction frees them.
            "segment.bytes": str(64 * 1024 * 1024),
        }
        logger.info("creating topic %s", topic)
        admin.create_topics(
            [NewTopic(topic, partitions, settings.replication_factor, topic_configs=config)],
            timeout_ms=30_000,
        )
        admin.wait_for_topics([topic], timeout_ms=15_000)
    finally:
        admin.close()
