"""Bootstrapping from what the streams worker keeps (``ConsumerSettings.bootstrap = "state"``).

Per log partition, the first source that can be used wins; the partition's log replay then
starts where that source is complete:

1. a **snapshot** from ``<log>.snapshots`` (:mod:`consumer_sdk._snapshot` defines the format),
   only when ``snapshot_keys`` are configured: verified, loaded in bulk into the store; the
   log resumes at the manifest's offset + 1. A refused snapshot is logged and counted by
   reason (``stats()["bootstrap"]["snapshot_refused"]``);
2. the per-rule **state topic** ``<log>.state`` (the streams package docstring defines the
   protocol): state partition *p* holds the live rules of log partition *p* as the original
   signed log records, and offset markers ``__offsets__:<p>`` promising that every effect of
   log partition *p* up to the marker's offset precedes the marker. Its end offsets are
   snapshotted and every partition still needed is read from its beginning to there, passing
   rule records to the sink exactly like log records (same codec, same verification),
   skipping tombstones (they only remove rules past ``expires_at``, which the SDK expires
   itself) and other reserved ``__`` keys; the log resumes at marker + 1;
3. otherwise the **log**, replayed as in ``bootstrap="log"``.

Events between a snapshot's or marker's offset and the end of that source are replayed
twice, which is harmless: applying an event is idempotent. A snapshot or marker at or beyond
the log's end, or older than the log's first offset (the records in between are gone), is
not used. The state topic is unusable as a whole when it does not exist or has another
partition count than the log.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from consumer_sdk._settings import ConsumerSettings
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
    "OFFSETS_KEY_PREFIX",
    "Plan",
    "SnapshotRead",
    "StateLoad",
    "load_state_topic",
    "plan_bootstrap",
    "read_snapshots",
    "snapshot_topic",
    "state_topic",
]

_log = logging.getLogger("consumer_sdk")

OFFSETS_KEY_PREFIX = b"__offsets__:"
_RESERVED_PREFIX = b"__"
_FIRST_WINDOW = 64
"""Records read back from a snapshot partition's end to find its last manifest."""


def state_topic(settings: ConsumerSettings) -> str:
    return settings.state_topic or f"{settings.kafka.topic}.state"


def snapshot_topic(settings: ConsumerSettings) -> str:
    return settings.snapshot_topic or f"{settings.kafka.topic}.snapshots"


@dataclass
class Plan:
    """Where each new log partition starts after :func:`plan_bootstrap`, what is left to
    position as in log mode, and the figures for ``stats()["bootstrap"]``."""

    starts: dict[int, int]
    rest: list[TopicPartition]
    stats: dict[str, Any]


def plan_bootstrap(
    consumer: Any,
    settings: ConsumerSettings,
    sink: UpdateSink,
    tps: Mapping[int, TopicPartition],
    new: list[TopicPartition],
    *,
    stop: threading.Event,
) -> Plan:
    """Load snapshots, then the state topic, for the ``new`` log partitions (see the module
    docstring). Leaves ``consumer`` assigned to the log's ``tps``, not yet positioned."""
    timeout_ms = settings.kafka.request_timeout_ms
    ends = consumer.end_offsets(new, timeout_ms=timeout_ms)
    begins = consumer.beginning_offsets(new, timeout_ms=timeout_ms)
    bounds = {tp.partition: (begins[tp], ends[tp]) for tp in new}
    starts: dict[int, int] = {}
    source = dict.fromkeys(sorted(bounds), "log")
    stats: dict[str, Any] = {"mode": "log", "partitions": source}

    if settings.snapshot_keys:
        snap = load_snapshots(consumer, settings, sink, bounds, log_partitions=len(tps), stop=stop)
        stats["snapshot"] = snap.stats()
        stats["snapshot_refused"] = dict(snap.refused)
        for p, offset in snap.offsets.items():
            starts[p] = offset + 1
            source[p] = "snapshot"
    else:
        stats["snapshot"] = {"used": False, "why": "no snapshot_keys configured"}
        stats["snapshot_refused"] = {}

    left = [p for p in bounds if p not in starts]
    if left:
        load = load_state_topic(
            consumer, settings, sink, log_partitions=len(tps), partitions=left, stop=stop
        )
        if load is None:
            stats["fallback"] = "state topic unusable"
        else:
            replay = []
            for p in left:
                marker = load.markers.get(p)
                if marker is None or not _covers(marker, bounds[p]):
                    replay.append(p)
                    continue
                starts[p] = marker + 1
                source[p] = "state"
            if replay:
                _log.info(
                    "no usable offset marker for log partitions %s: replaying them from the log",
                    replay,
                )
            stats.update(
                state_topic=load.topic,
                state_records=load.records,
                markers=dict(load.markers),
                log_replay_partitions=replay,
            )
    if any(v == "snapshot" for v in source.values()):
        stats["mode"] = "snapshot"
    elif "state_topic" in stats:
        stats["mode"] = "state"
    consumer.assign(list(tps.values()))
    return Plan(starts, [tp for tp in new if tp.partition not in starts], stats)


def _covers(offset: int, bounds: tuple[int, int]) -> bool:
    """Whether resuming the log right after ``offset`` leaves no gap and promises nothing
    that does not exist."""
    begin, end = bounds
    return begin - 1 <= offset < end


# -- snapshots ------------------------------------------------------------------------------


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
    stop: threading.Event,
) -> SnapshotLoad:
    """Read, verify and load the snapshots of the log partitions in ``bounds`` (partition ->
    the log's beginning and end offsets); log and count every refusal."""
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
        lifetime=settings.max_token_lifetime,
        timeout_ms=settings.kafka.request_timeout_ms,
        poll_timeout_ms=settings.poll_timeout_ms,
        stop=stop,
    )
    for p, reason in sorted(read.refused.items()):
        _log.warning("snapshot of log partition %d refused (%s): falling back", p, reason)
        load.refused[reason] += 1
    chunks = [chunk for _, cs in read.accepted.values() for chunk in cs]
    if chunks and not stop.is_set():
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
    lifetime: float,
    timeout_ms: int,
    poll_timeout_ms: int,
    stop: threading.Event,
) -> SnapshotRead:
    """Find, verify and read the latest snapshot of each partition (``bounds``: the log's
    beginning and end offsets, to refuse a snapshot that would leave a gap; ``None`` skips
    that check). Leaves ``consumer`` assigned to the snapshot topic."""
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
            if bounds is not None and not _covers(manifest.offset, bounds[p]):
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


def _signature(headers: Any) -> bytes | None:
    for name, value in headers or ():
        if name == SIGNATURE_HEADER:
            return bytes(value)
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
    try:
        generation = json.loads(record.value)["generation"]
    except (ValueError, TypeError, KeyError):
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


# -- the state topic ------------------------------------------------------------------------


@dataclass
class StateLoad:
    """What reading the state topic gave: the markers (log partition -> last covered
    offset), and counts for ``stats()``."""

    topic: str
    markers: dict[int, int] = field(default_factory=dict)
    records: int = 0
    tombstones: int = 0
    ignored: int = 0


def load_state_topic(
    consumer: Any,
    settings: ConsumerSettings,
    sink: UpdateSink,
    *,
    log_partitions: int,
    stop: threading.Event,
    partitions: Collection[int] | None = None,
) -> StateLoad | None:
    """Read the state topic (only ``partitions`` of it, if given) into ``sink``; ``None``
    (logged) when it cannot be used.

    Leaves ``consumer`` assigned to the state topic: the caller assigns the log next.
    """
    topic = state_topic(settings)
    timeout_ms = settings.kafka.request_timeout_ms
    parts = consumer.partitions_for_topic(topic)
    if not parts:
        _log.warning("state topic %r does not exist: bootstrapping from the log", topic)
        return None
    if len(parts) != log_partitions:
        _log.warning(
            "state topic %r has %d partitions but the log has %d: bootstrapping from the log",
            topic,
            len(parts),
            log_partitions,
        )
        return None
    chosen = sorted(parts if partitions is None else set(parts) & set(partitions))
    tps = [TopicPartition(topic, p) for p in chosen]
    ends = consumer.end_offsets(tps, timeout_ms=timeout_ms)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    load = StateLoad(topic)
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending and not stop.is_set():
        batch = consumer.poll(timeout_ms=settings.poll_timeout_ms)
        for tp, records in batch.items():
            for record in records:
                _apply(load, sink, settings.kafka.topic, tp.partition, record)
            if records[-1].offset + 1 >= ends[tp]:
                pending.discard(tp)
        if not batch:
            # A compacted partition can end in a gap (removed records): ask where it is.
            for tp in list(pending):
                if consumer.position(tp, timeout_ms=timeout_ms) >= ends[tp]:
                    pending.discard(tp)
        sink.tick()
    return load


def _apply(load: StateLoad, sink: UpdateSink, log_topic: str, partition: int, record: Any) -> None:
    key: bytes = record.key or b""
    if key.startswith(OFFSETS_KEY_PREFIX):
        marker = _marker(record.value, log_topic, partition)
        if marker is None:
            load.ignored += 1
            _log.warning("ignored a malformed offset marker in state partition %d", partition)
        else:
            load.markers[partition] = marker
    elif key.startswith(_RESERVED_PREFIX):
        load.ignored += 1
    elif record.value is None:
        load.tombstones += 1
    else:
        load.records += 1
        sink.record(record.value, record.headers or (), timestamp_ms=record.timestamp)


def _marker(value: bytes | None, log_topic: str, partition: int) -> int | None:
    """The offset of a marker for ``partition`` of ``log_topic``, or ``None``."""
    try:
        doc = json.loads(value or b"")
        ok = doc["topic"] == log_topic and int(doc["partition"]) == partition
        offset = int(doc["offset"])
    except (ValueError, TypeError, KeyError):
        return None
    return offset if ok and offset >= 0 else None
