"""Reading state partitions back, to seed a rules table that is not in step with them.

The worker's rules table must hold every winner the state topic holds before it judges new
events: a table that starts empty (a new app id, a deleted changelog) would let a weaker late
event replace a winner in the state topic. :func:`read_state` returns the rule records of the
given state partitions (markers, reserved keys and tombstones left out); the processor
verifies and merges them (:meth:`streams._processor.Processor.seed`).

A state partition whose last offset marker names another incarnation of the log (its topic
id, KIP-516: the log was deleted and recreated under the same name, and the state topic left)
holds the rules of the deleted log: :func:`read_state` leaves it out, and the worker
re-derives that partition from the new log instead (:func:`log_incarnation` gives the log's
id, and where its partitions begin).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from consumer_sdk._marker import read_marker
from consumer_sdk._snapshot_reader import topic_id as current_topic_id
from streams._records import signature_of
from streams._settings import StreamsSettings
from streams._topics import StreamsError

__all__ = ["StateRecord", "log_incarnation", "read_state"]

logger = logging.getLogger("streams")

StateRecord = tuple[bytes, bytes | None]
"""A rule record's value and its ``revocast-sig`` header (``None``: unsigned)."""


def log_incarnation(
    settings: StreamsSettings, partitions: Iterable[int]
) -> tuple[uuid.UUID | None, dict[int, int]]:
    """The id of the log's current incarnation (``None``: the broker gives none) and the
    first offset of each of ``partitions``."""
    tps = [TopicPartition(settings.log_topic, p) for p in sorted(set(partitions))]
    try:
        consumer = KafkaConsumer(
            **settings.kafka.client_config(KafkaConsumer.DEFAULT_CONFIG), enable_auto_commit=False
        )
        try:
            found = current_topic_id(consumer, settings.log_topic)
            begins = consumer.beginning_offsets(tps) if tps else {}
        finally:
            consumer.close()
    except KafkaError as exc:
        raise StreamsError(f"cannot read the log topic's id: {exc}") from exc
    return found, {tp.partition: offset for tp, offset in begins.items()}


def read_state(
    settings: StreamsSettings,
    partitions: Iterable[int],
    timeout: float = 60.0,
    *,
    topic_id: uuid.UUID | None = None,
) -> dict[int, list[StateRecord]]:
    """Every rule record of the given state partitions, from their first offset up to their
    end when called, in offset order (several per key where compaction has not run yet: the
    merge keeps the winner whatever the order).

    With ``topic_id`` (the log's current incarnation), a partition whose last marker names
    another id is left out of the result: its records are the rules of a deleted log. A
    marker naming no id (written before markers did) is taken to be of this log.

    ``timeout`` bounds a wait without progress, not the whole read: a large state takes as
    long as it takes (about 30 µs per record here), a stalled one fails after ``timeout``."""
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    tps = [TopicPartition(settings.state_topic, p) for p in wanted]
    found: dict[int, list[StateRecord]] = {p: [] for p in wanted}
    marked: dict[int, uuid.UUID | None] = {}
    """Per partition, the topic id its last marker so far names."""
    try:
        config = settings.kafka.client_config(KafkaConsumer.DEFAULT_CONFIG)
        # Reaching no broker is a wait without progress too: bounded by ``timeout``, not by
        # kafka-python's 30 s bootstrap timeout.
        config["bootstrap_timeout_ms"] = min(
            int(config.get("bootstrap_timeout_ms", 30_000)), max(1, int(timeout * 1000))
        )
        consumer = KafkaConsumer(**config, enable_auto_commit=False)
        try:
            consumer.assign(tps)
            ends = consumer.end_offsets(tps)
            begins = consumer.beginning_offsets(tps)
            for tp in tps:
                consumer.seek(tp, begins[tp])
            left = {tp for tp in tps if begins[tp] < ends[tp]}
            while left:
                if time.monotonic() > deadline:
                    raise StreamsError(
                        f"reading state partitions {wanted}: nothing read for {timeout:.0f}s"
                    )
                batches = consumer.poll(timeout_ms=500, max_records=10_000)
                if batches:
                    deadline = time.monotonic() + timeout
                for tp, records in batches.items():
                    end = ends[tp]
                    into = found[tp.partition]
                    for record in records:
                        if record.offset >= end:
                            break
                        if record.value is None or record.key is None:
                            continue
                        if record.key.startswith(b"__"):  # markers and reserved keys
                            marker = read_marker(
                                record.key, record.value, settings.log_topic, tp.partition
                            )
                            if marker is not None:
                                marked[tp.partition] = marker.topic_id
                            continue
                        into.append((record.value, signature_of(record.headers)))
                for tp in list(left):
                    if consumer.position(tp) >= ends[tp]:
                        left.discard(tp)
        finally:
            consumer.close()
    except KafkaError as exc:
        raise StreamsError(f"cannot read the state topic: {exc}") from exc
    if topic_id is not None:
        for p, named in marked.items():
            if named is not None and named != topic_id:
                logger.warning(
                    "state partition %d is of another incarnation of the log (its last "
                    "marker names topic id %s, the log's is %s): not seeding from it",
                    p,
                    named,
                    topic_id,
                )
                del found[p]
    logger.info(
        "read %d state records of partitions %s",
        sum(len(records) for records in found.values()),
        wanted,
    )
    return found
