"""Loading the per-rule state topic ``<log>.state``: the second source of the bootstrap plan
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
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition

from consumer_sdk._fetch import deliver, poll_ahead
from consumer_sdk._settings import ConsumerSettings
from consumer_sdk._source import UpdateSink

__all__ = [
    "OFFSETS_KEY_PREFIX",
    "StateLoad",
    "load_state_topic",
    "state_topic",
]

_log = logging.getLogger("consumer_sdk")

OFFSETS_KEY_PREFIX = b"__offsets__:"
_RESERVED_PREFIX = b"__"


def state_topic(settings: ConsumerSettings) -> str:
    return settings.state_topic or f"{settings.kafka.topic}.state"


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
    log_topic = settings.kafka.topic
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
    return load


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
                marker = _marker(record.value, log_topic, partition)
                if marker is None:
                    load.ignored += 1
                    _log.warning(
                        "ignored a malformed offset marker in state partition %d", partition
                    )
                else:
                    load.markers[partition] = marker
            else:
                load.ignored += 1
        elif record.value is None:
            load.tombstones += 1
        else:
            rules.append(record)
    load.records += len(rules)
    deliver(sink, rules)


def _marker(value: bytes | None, log_topic: str, partition: int) -> int | None:
    """The offset of a marker for ``partition`` of ``log_topic``, or ``None`` (anything else,
    whatever the bytes: a marker is not signed)."""
    try:
        doc = json.loads(value or b"")
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("topic") != log_topic:
        return None
    marked, offset = doc.get("partition"), doc.get("offset")
    if type(marked) is not int or marked != partition or type(offset) is not int or offset < 0:
        return None
    return offset
