"""Loading the compacted state topic ``<log>.state``: the second source of the bootstrap plan
(:mod:`consumer_sdk._state_bootstrap`), for the log partitions no snapshot covered.

The streams package docstring defines the protocol: state partition *p* holds the live rules
of log partition *p* as the original signed log records, and offset markers
``__offsets__:<p>`` promising that every effect of log partition *p* up to the marker's offset
precedes the marker. Its end offsets are snapshotted and every partition still needed is read
from its beginning to there, passing rule records to the sink exactly like log records (same
codec, same verification), skipping tombstones (they only remove rules past ``expires_at``,
which the SDK expires itself) and other reserved ``__`` keys; the log resumes at marker + 1.

The state topic is unusable as a whole when it does not exist or has another partition count
than the log.

A marker names the incarnation of the log it counts offsets of (``topic_id``, KIP-516). The
last marker of each partition is looked up first, from the partition's tail: a partition
whose marker names another incarnation (``other_incarnation``: the log was deleted and
recreated under the same name, and the state topic left) or where one side has no id
(``no_topic_id``) is not read at all — its rules may be the deleted log's — and is replayed
from the log, logged and counted (:attr:`StateLoad.refused`).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from consumer_sdk._fetch import deliver, poll_ahead
from consumer_sdk._marker import OFFSETS_KEY_PREFIX, Marker, last_markers, read_marker
from consumer_sdk._settings import ConsumerSettings, derived_topics
from consumer_sdk._source import UpdateSink

__all__ = ["StateLoad", "load_state_topic", "state_topic"]

_log = logging.getLogger("consumer_sdk")

_RESERVED_PREFIX = b"__"


def state_topic(settings: ConsumerSettings) -> str:
    return derived_topics(
        settings.kafka.topic,
        state_topic=settings.state_topic,
        snapshot_topic=settings.snapshot_topic,
    )[0]


@dataclass
class StateLoad:
    """What reading the state topic gave: the markers (log partition -> last covered
    offset), and counts for ``stats()``."""

    topic: str
    markers: dict[int, int] = field(default_factory=dict)
    records: int = 0
    tombstones: int = 0
    ignored: int = 0
    refused: dict[int, str] = field(default_factory=dict)
    """Log partition -> why its state partition was not used (``other_incarnation``,
    ``no_topic_id``): its marker is of another incarnation of the log, or cannot tell."""
    seen: dict[int, Marker] = field(default_factory=dict)
    """The last well-formed marker read per partition, whatever incarnation it names."""


def load_state_topic(
    consumer: Any,
    settings: ConsumerSettings,
    sink: UpdateSink,
    *,
    log_partitions: int,
    stop: threading.Event,
    topic_id: uuid.UUID | None,
    partitions: Collection[int] | None = None,
) -> StateLoad | None:
    """Read the state topic (only ``partitions`` of it, if given) into ``sink``; ``None``
    (logged) when it cannot be used. ``topic_id``: the id of the log's current incarnation
    (:func:`consumer_sdk._snapshot_reader.topic_id`; ``None``: the broker gives none).

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
    load = StateLoad(topic)
    log_topic = settings.kafka.topic
    last = last_markers(
        consumer,
        tps,
        ends,
        log_topic,
        stop=stop.is_set,
        poll_timeout_ms=settings.poll_timeout_ms,
        request_timeout_ms=timeout_ms,
    )
    for p, marker in sorted(last.items()):
        if marker.topic_id != topic_id:
            _refuse(load, p, marker.topic_id, topic_id)
    tps = [tp for tp in tps if tp.partition not in load.refused]
    consumer.assign(tps)
    if tps:  # none would mean every assigned partition to kafka-python
        consumer.seek_to_beginning(*tps)
    pending = {tp for tp in tps if ends[tp] > 0}
    while pending and not stop.is_set():
        fetched = False
        for tp, records in poll_ahead(consumer, settings.poll_timeout_ms):
            fetched = True
            _apply(load, sink, log_topic, tp.partition, records)
            if records[-1].offset + 1 >= ends[tp]:
                pending.discard(tp)
        if not fetched:
            # A compacted partition can end in a gap (removed records): ask where it is.
            for tp in list(pending):
                if consumer.position(tp, timeout_ms=timeout_ms) >= ends[tp]:
                    pending.discard(tp)
        sink.tick()
    for p, marker in sorted(load.seen.items()):
        if p in load.refused:
            continue
        if marker.topic_id == topic_id:
            load.markers[p] = marker.offset
        else:  # a marker written since the tail was looked at
            _refuse(load, p, marker.topic_id, topic_id)
    return load


def _refuse(
    load: StateLoad, partition: int, named: uuid.UUID | None, log: uuid.UUID | None
) -> None:
    reason = "no_topic_id" if None in (named, log) else "other_incarnation"
    load.refused[partition] = reason
    _log.warning(
        "state topic marker of log partition %d refused (%s): it names log topic id %s, the "
        "log's is %s; replaying that partition from the log",
        partition,
        reason,
        named,
        log,
    )


def _apply(
    load: StateLoad, sink: UpdateSink, log_topic: str, partition: int, records: list[Any]
) -> None:
    """One fetched run of a state partition's records: rules go to the sink in order, as log
    records do; markers, tombstones and other reserved keys are counted."""
    rules: list[Any] = []
    for record in records:
        key: bytes = record.key or b""
        if key.startswith(_RESERVED_PREFIX):
            if key.startswith(OFFSETS_KEY_PREFIX):
                marker = read_marker(key, record.value, log_topic, partition)
                if marker is None:
                    load.ignored += 1
                    _log.warning(
                        "ignored a malformed offset marker in state partition %d", partition
                    )
                else:
                    load.seen[partition] = marker
            else:
                load.ignored += 1
        elif record.value is None:
            load.tombstones += 1
        else:
            rules.append(record)
    load.records += len(rules)
    deliver(sink, rules)
