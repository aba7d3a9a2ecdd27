"""Reading signed snapshots from ``<log>.snapshots``: the first source of the bootstrap plan
(:mod:`consumer_sdk._state_bootstrap`), used only when ``snapshot_keys`` are configured.

:mod:`consumer_sdk._snapshot` defines the format and the steps of reading one partition's
snapshot; this module does them against Kafka: find each partition's last manifest, verify it,
read and check the chunks it lists, and load them in bulk into the store. The log then resumes
at the manifest's offset + 1. A refused snapshot is logged and counted by reason
(``stats()["bootstrap"]["snapshot_refused"]``). The streams worker's snapshotter
(:mod:`streams._snapshot`) resumes from its own snapshots with :func:`read_snapshots` too.

A snapshot of another incarnation of the log (deleted and recreated under the same name: its
offsets now mean other records) is not used: the manifest names the log's topic id, compared
with the one Kafka gives now (:func:`topic_id`, one metadata request per bootstrap). Nor is a
snapshot at or beyond the log's end, or older than the log's first offset (the records in
between are gone) (:func:`covers`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from consumer_sdk._settings import ConsumerSettings, derived_topics
from consumer_sdk._snapshot import (
    Chunk,
    Manifest,
    SnapshotError,
    decode_chunk,
    parse_key,
    verify_manifest,
)
from consumer_sdk._source import UpdateSink
from revocation_events import SIGNATURE_HEADER, EventVerifier

__all__ = [
    "SnapshotLoad",
    "SnapshotRead",
    "SnapshotTail",
    "covers",
    "load_snapshots",
    "read_snapshots",
    "read_tails",
    "snapshot_topic",
    "topic_id",
]

_log = logging.getLogger("consumer_sdk")

_FIRST_WINDOW = 64
"""Records read back from a snapshot partition's end to find its last manifest."""
_FRESH_MS = 2000
"""Cluster metadata younger than this is recent enough to name a topic's incarnation."""


def snapshot_topic(settings: ConsumerSettings) -> str:
    return derived_topics(
        settings.kafka.topic,
        state_topic=settings.state_topic,
        snapshot_topic=settings.snapshot_topic,
    )[1]


def topic_id(consumer: Any, topic: str) -> uuid.UUID | None:
    """The id Kafka gives the current incarnation of ``topic`` (KIP-516, brokers 2.8+), or
    ``None`` when it gives none (an older broker, or the topic does not exist).

    kafka-python 3.0 keeps topic ids in the consumer's cluster metadata, with no public
    accessor. Metadata refreshed in the last :data:`_FRESH_MS` (a consumer just created, as
    at an SDK's start) is used as is; older metadata is asked afresh with ``topics()`` (one
    request, which kafka-python delays by ``retry_backoff_ms`` after the previous one), so
    a topic recreated since shows its new id.
    """
    cluster = getattr(consumer, "_cluster", None)
    lookup = getattr(cluster, "topic_id", None)
    if not callable(lookup):
        # Another kafka-python: no id, so snapshots that name one are refused (logged).
        return None
    refreshed = getattr(cluster, "_last_successful_refresh_ms", 0)
    found = lookup(topic)
    if found is None or not 0 <= time.monotonic() * 1000 - refreshed <= _FRESH_MS:
        consumer.topics()
        found = lookup(topic)
    return found if isinstance(found, uuid.UUID) and found.int != 0 else None


def covers(offset: int, bounds: tuple[int, int]) -> bool:
    """Whether resuming the log right after ``offset`` leaves no gap and promises nothing
    that does not exist."""
    begin, end = bounds
    return begin - 1 <= offset < end


@dataclass
class SnapshotRead:
    """What :func:`read_snapshots` found, per snapshot (= log) partition."""

    accepted: dict[int, tuple[Manifest, list[Chunk]]] = field(default_factory=dict)
    refused: dict[int, str] = field(default_factory=dict)
    orphans: dict[int, list[bytes]] = field(default_factory=dict)
    """Keys of live chunks no manifest lists (an interrupted write), for the writer."""
    bytes: int = 0


@dataclass
class SnapshotLoad:
    topic: str
    offsets: dict[int, int] = field(default_factory=dict)
    generations: dict[int, int] = field(default_factory=dict)
    ages: dict[int, float] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    loaded: dict[str, int] = field(default_factory=dict)
    chunks: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def stats(self) -> dict[str, Any]:
        return {
            "used": bool(self.offsets),
            "topic": self.topic,
            "offsets": dict(self.offsets),
            "generations": dict(self.generations),
            "age_seconds": {p: round(a, 1) for p, a in self.ages.items()},
            "rules": dict(self.loaded),
            "chunks": self.chunks,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
        }


def load_snapshots(
    consumer: Any,
    settings: ConsumerSettings,
    sink: UpdateSink,
    bounds: Mapping[int, tuple[int, int]],
    *,
    log_partitions: int,
    log_id: uuid.UUID | None,
    stop: threading.Event,
) -> SnapshotLoad:
    """Read, verify and load the snapshots of the log partitions in ``bounds`` (partition ->
    the log's beginning and end offsets); log and count every refusal. ``log_id``: the log's
    current topic id (:func:`topic_id`)."""
    started = time.perf_counter()
    topic = snapshot_topic(settings)
    load = SnapshotLoad(topic)
    parts = consumer.partitions_for_topic(topic)
    if not parts or len(parts) != log_partitions:
        why = "no_topic" if not parts else "partition_count"
        _log.warning("snapshot topic %r unusable (%s): not loading snapshots", topic, why)
        load.refused[why] += len(bounds)
        return load
    read = read_snapshots(
        consumer,
        topic,
        settings.kafka.topic,
        [p for p in bounds if p in parts],
        EventVerifier(settings.snapshot_keys),
        bounds=bounds,
        topic_id=log_id,
        lifetime=settings.max_token_lifetime,
        timeout_ms=settings.kafka.request_timeout_ms,
        poll_timeout_ms=settings.poll_timeout_ms,
        stop=stop,
    )
    for p, reason in sorted(read.refused.items()):
        _log.warning("snapshot of log partition %d refused (%s): falling back", p, reason)
        load.refused[reason] += 1
    if stop.is_set():
        return load  # nothing loaded: no partition may start after a snapshot
    chunks = [chunk for _, cs in read.accepted.values() for chunk in cs]
    if chunks:
        load.loaded = sink.restore(chunks)
    now = time.time()
    for p, (manifest, cs) in read.accepted.items():
        load.offsets[p] = manifest.offset
        load.generations[p] = manifest.generation
        load.ages[p] = now - manifest.created_at
        load.chunks += len(cs)
    load.bytes = read.bytes
    load.seconds = time.perf_counter() - started
    if load.offsets:
        _log.info(
            "loaded snapshots of log partitions %s (%d chunks, %d bytes) in %.2fs",
            sorted(load.offsets),
            load.chunks,
            load.bytes,
            load.seconds,
        )
    return load


def read_snapshots(
    consumer: Any,
    topic: str,
    log_topic: str,
    partitions: Iterable[int],
    verifier: EventVerifier,
    *,
    bounds: Mapping[int, tuple[int, int]] | None,
    topic_id: uuid.UUID | None,
    lifetime: float,
    timeout_ms: int,
    poll_timeout_ms: int,
    stop: threading.Event,
) -> SnapshotRead:
    """Find, verify and read the latest snapshot of each partition (``bounds``: the log's
    beginning and end offsets, to refuse a snapshot that would leave a gap, and ``topic_id``
    the id of its current incarnation, to refuse one of another; ``bounds=None`` skips both
    checks). Leaves ``consumer`` assigned to the snapshot topic."""
    read = SnapshotRead()
    tps = {p: TopicPartition(topic, p) for p in partitions}
    if not tps:
        return read
    ends = consumer.end_offsets(list(tps.values()), timeout_ms=timeout_ms)
    found = _find_manifests(consumer, tps, ends, timeout_ms, poll_timeout_ms, stop, read)
    wanted: dict[int, Manifest] = {}
    for p, record in found.items():
        try:
            manifest = verify_manifest(record.value, _signature(record.headers), verifier)
            if manifest.topic != log_topic or manifest.partition != p:
                raise SnapshotError("other_topic", "the manifest is for another log partition")
            if bounds is not None and manifest.topic_id != topic_id:
                raise SnapshotError(
                    "no_topic_id" if None in (manifest.topic_id, topic_id) else "other_incarnation",
                    f"written for log topic id {manifest.topic_id}, the log's is {topic_id}",
                )
            if bounds is not None and not covers(manifest.offset, bounds[p]):
                begin, end = bounds[p]
                raise SnapshotError(
                    "beyond_end" if manifest.offset >= end else "before_log_start",
                    f"offset {manifest.offset} outside the log's {begin}..{end}",
                )
            if manifest.max_token_lifetime != lifetime:
                raise SnapshotError(
                    "lifetime",
                    f"made for max_token_lifetime {manifest.max_token_lifetime:g}, "
                    f"not {lifetime:g}",
                )
        except SnapshotError as exc:
            read.refused[p] = exc.reason
            continue
        wanted[p] = manifest
    for p in tps:
        if p not in found and p not in read.refused:
            read.refused[p] = "missing"
    values = _fetch_chunks(consumer, tps, ends, wanted, timeout_ms, poll_timeout_ms, stop, read)
    for p, manifest in wanted.items():
        try:
            chunks = []
            for i, ref in enumerate(manifest.chunks):
                data = values.get((p, i))
                if data is None:
                    raise SnapshotError("missing_chunk", f"chunk {i} is not at {ref.offset}")
                if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
                    raise SnapshotError("bad_hash", f"chunk {i} does not match its hash")
                chunks.append(decode_chunk(data))
        except SnapshotError as exc:
            read.refused[p] = exc.reason
            continue
        read.accepted[p] = (manifest, chunks)
    return read


@dataclass(frozen=True)
class SnapshotTail:
    """What a writer taking over a snapshot partition must know (:func:`read_tails`)."""

    end: int
    """The partition's end offset when it was read."""
    generation: int
    """The highest generation found there (-1: none): a new one must be above it."""
    garbage: tuple[bytes, ...]
    """Keys of the live chunks a new generation replaces: those the last manifest lists
    (verified or not: it is being replaced) and those of unfinished writes after it."""


def read_tails(
    consumer: Any,
    topic: str,
    partitions: Iterable[int],
    *,
    timeout_ms: int,
    poll_timeout_ms: int,
    stop: threading.Event,
) -> dict[int, SnapshotTail]:
    """Per partition of ``topic``, what another writer may have left there since this one
    last wrote (a rebalance moved the partition). Reads the tails only, not the chunks.
    Leaves ``consumer`` assigned to the snapshot topic."""
    tps = {p: TopicPartition(topic, p) for p in partitions}
    if not tps:
        return {}
    ends = consumer.end_offsets(list(tps.values()), timeout_ms=timeout_ms)
    read = SnapshotRead()
    found = _find_manifests(consumer, tps, ends, timeout_ms, poll_timeout_ms, stop, read)
    tails = {}
    for p, tp in tps.items():
        generation, count = _listed(found.get(p))
        orphans = read.orphans.get(p, [])
        listed = [f"{p}/{generation}/{i}".encode() for i in range(count)]
        orphaned = [key[1] for key in map(parse_key, orphans) if key and key[1] is not None]
        tails[p] = SnapshotTail(
            end=ends[tp],
            generation=max([generation, *orphaned]),
            garbage=tuple(dict.fromkeys([*listed, *orphans])),
        )
    return tails


def _listed(record: Any) -> tuple[int, int]:
    """The generation and chunk count of an unverified manifest record (-1, 0: none)."""
    generation = _generation(record)
    if generation is None:
        return -1, 0
    chunks = json.loads(record.value).get("chunks")  # a dict: _generation read it
    return generation, len(chunks) if isinstance(chunks, list) else 0


def _signature(headers: Any) -> bytes | None:
    for name, value in headers or ():
        if name == SIGNATURE_HEADER:
            return None if value is None else bytes(value)  # a null header value: unsigned
    return None


def _find_manifests(
    consumer: Any,
    tps: Mapping[int, TopicPartition],
    ends: Mapping[TopicPartition, int],
    timeout_ms: int,
    poll_timeout_ms: int,
    stop: threading.Event,
    read: SnapshotRead,
) -> dict[int, Any]:
    """The last manifest record of each partition, reading back from its end in growing
    windows; also fills ``read.orphans``."""
    all_tps = list(tps.values())
    begins = consumer.beginning_offsets(all_tps, timeout_ms=timeout_ms)
    consumer.assign(all_tps)
    windows: dict[int, tuple[int, int]] = {}
    seen: dict[int, dict[int, Any]] = {p: {} for p in tps}  # offset -> record, per partition
    for p, tp in tps.items():
        if ends[tp] > begins[tp]:
            windows[p] = (max(begins[tp], ends[tp] - _FIRST_WINDOW), ends[tp])
            consumer.seek(tp, windows[p][0])
    consumer.pause(*[tps[p] for p in tps if p not in windows])

    def done(p: int) -> None:
        lo, hi = windows[p]
        begin = begins[tps[p]]
        if lo > begin and not any(_is_manifest(r) for r in seen[p].values()):
            wider = (max(begin, lo - 4 * (hi - lo)), lo)
            windows[p] = wider
            consumer.seek(tps[p], wider[0])
            return
        del windows[p]
        consumer.pause(tps[p])

    while windows and not stop.is_set():
        batch = consumer.poll(timeout_ms=poll_timeout_ms)
        for tp, records in batch.items():
            p = tp.partition
            if p not in windows:
                continue
            lo, hi = windows[p]
            for record in records:
                if lo <= record.offset < hi:
                    seen[p][record.offset] = record
            if records[-1].offset + 1 >= hi:
                done(p)
        if not batch:
            for p in list(windows):
                # A compacted window can end in a gap: ask where the partition stands.
                if consumer.position(tps[p], timeout_ms=timeout_ms) >= windows[p][1]:
                    done(p)
    consumer.resume(*all_tps)
    found: dict[int, Any] = {}
    for p, records in seen.items():
        live: dict[bytes, int] = {}
        for offset in sorted(records):
            record = records[offset]
            key = parse_key(record.key)
            if key is None or key[0] != p:
                continue
            if key[1] is None:
                found[p] = record
                live.clear()  # what came before belongs to this or an older manifest
            elif record.value is None:
                live.pop(record.key, None)
            else:
                live[record.key] = key[1]
        current = found.get(p)
        generation = _generation(current)
        orphans = [k for k, g in live.items() if g != generation]
        if orphans:
            read.orphans[p] = orphans
    return found


def _is_manifest(record: Any) -> bool:
    key = parse_key(record.key)
    return key is not None and key[1] is None


def _generation(record: Any) -> int | None:
    if record is None or record.value is None:
        return None
    try:  # not verified yet: anything can be here
        generation = json.loads(record.value)["generation"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return generation if type(generation) is int else None


def _fetch_chunks(
    consumer: Any,
    tps: Mapping[int, TopicPartition],
    ends: Mapping[TopicPartition, int],
    wanted: Mapping[int, Manifest],
    timeout_ms: int,
    poll_timeout_ms: int,
    stop: threading.Event,
    read: SnapshotRead,
) -> dict[tuple[int, int], bytes]:
    """The values of the chunks the manifests list, keyed ``(partition, index)``; a record
    at a listed offset with another key is left out (the caller reports it missing)."""
    out: dict[tuple[int, int], bytes] = {}
    expect: dict[int, dict[int, tuple[bytes, int]]] = {}
    for p, manifest in wanted.items():
        expect[p] = {
            ref.offset: (f"{p}/{manifest.generation}/{i}".encode(), i)
            for i, ref in enumerate(manifest.chunks)
        }
    # The last offset to read: the last listed chunk, or the partition's end if that is
    # before it (a manifest listing offsets that do not exist).
    pending = {
        p: min(max(refs), ends[tps[p]] - 1)
        for p, refs in expect.items()
        if refs and min(refs) < ends[tps[p]]
    }
    consumer.pause(*[tps[p] for p in tps if p not in pending])
    for p in pending:
        consumer.seek(tps[p], min(expect[p]))
    while pending and not stop.is_set():
        batch = consumer.poll(timeout_ms=poll_timeout_ms)
        for tp, records in batch.items():
            p = tp.partition
            if p not in pending:
                continue
            refs = expect[p]
            for record in records:
                hit = refs.get(record.offset)
                if hit is not None and record.key == hit[0] and record.value is not None:
                    out[p, hit[1]] = record.value
                    read.bytes += len(record.value)
            if records[-1].offset >= pending[p]:
                del pending[p]
                consumer.pause(tp)
        if not batch:
            # A listed offset that compaction removed ends the partition early.
            for p in list(pending):
                if consumer.position(tps[p], timeout_ms=timeout_ms) > pending[p]:
                    del pending[p]
    consumer.resume(*tps.values())
    return out
