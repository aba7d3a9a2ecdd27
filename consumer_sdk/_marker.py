"""Offset markers of the state topic ``<log>.state``, read back: the one parser and the one tail
scan shared by the SDK's state-topic load, the streams worker (where it resumes, which state
partitions it seeds from) and ``revocast rebuild-state``.

The marker of log partition *p* is the record keyed ``__offsets__:<p>`` in state partition *p*,
its value ``{"topic": <log>, "partition": <p>, "offset": <o>, "topic_id": <uuid>}``: every
effect of log partition *p* up to offset *o* precedes it (the protocol is in the :mod:`streams`
docstring). ``topic_id`` names the incarnation of the log the offsets are of (KIP-516); markers
written before it existed, or for a broker without topic ids, have none.

Markers are not signed: whatever the bytes, reading one never raises, and anything but an exact
marker of the given log and partition is ``None`` (a ``topic_id`` that is not a UUID included).
What a missing or foreign ``topic_id`` means is each caller's to judge: SDKs refuse both; the
worker takes a marker without one to be of the current log (written before markers named it).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition

__all__ = ["OFFSETS_KEY_PREFIX", "Marker", "last_markers", "read_marker"]

OFFSETS_KEY_PREFIX = b"__offsets__:"
_FIRST_WINDOW = 256
"""State records read back from a partition's end to find its last marker (markers are
written every tick while the log moves), then four times more each round."""


@dataclass(frozen=True, slots=True)
class Marker:
    """A state partition's offset marker, read back."""

    offset: int
    """The last log offset the state partition covers."""
    topic_id: uuid.UUID | None
    """The incarnation of the log ``offset`` is of; ``None``: the marker names none."""


def read_marker(
    key: bytes | None, value: bytes | None, log_topic: str, partition: int
) -> Marker | None:
    """The marker a state record of ``partition`` is for ``log_topic``, or ``None``."""
    if key != OFFSETS_KEY_PREFIX + str(partition).encode() or value is None:
        return None
    try:
        doc = json.loads(value)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("topic") != log_topic:
        return None
    marked, offset = doc.get("partition"), doc.get("offset")
    if type(marked) is not int or marked != partition or type(offset) is not int or offset < 0:
        return None
    named = doc.get("topic_id")
    if named is None:
        return Marker(offset, None)
    if not isinstance(named, str):
        return None
    try:
        return Marker(offset, uuid.UUID(named))
    except ValueError:
        return None


def last_markers(
    consumer: Any,
    tps: Sequence[TopicPartition],
    ends: Mapping[TopicPartition, int],
    log_topic: str,
    *,
    stop: Callable[[], bool],
    poll_timeout_ms: int,
    request_timeout_ms: int,
) -> dict[int, Marker]:
    """The last marker of each state partition of ``tps`` below its offset in ``ends``, by
    partition; one without any is read whole and left out.

    Reads back from the end in windows growing four times, all partitions at once. ``stop`` is asked
    before each poll: true ends the scan with the markers found so far, and what it raises (a
    deadline passed) comes out as is. Leaves ``consumer`` assigned to some of ``tps``.
    """
    begins = consumer.beginning_offsets(list(tps), timeout_ms=request_timeout_ms)
    top = {tp: ends[tp] for tp in tps}
    window = _FIRST_WINDOW
    found: dict[int, Marker] = {}
    pending = [tp for tp in tps if top[tp] > begins[tp]]
    while pending and not stop():
        bottom = {tp: max(begins[tp], top[tp] - window) for tp in pending}
        consumer.assign(pending)
        for tp in pending:
            consumer.seek(tp, bottom[tp])
        reading = set(pending)
        while reading and not stop():
            batch = consumer.poll(timeout_ms=poll_timeout_ms)
            for tp, records in batch.items():
                for record in records:
                    if record.offset >= top[tp]:
                        break
                    marker = read_marker(record.key, record.value, log_topic, tp.partition)
                    if marker is not None:
                        found[tp.partition] = marker
                if records[-1].offset + 1 >= top[tp]:
                    reading.discard(tp)
            if not batch:  # a compacted partition can end in a gap
                for tp in list(reading):
                    if consumer.position(tp, timeout_ms=request_timeout_ms) >= top[tp]:
                        reading.discard(tp)
        top.update(bottom)
        window *= 4
        pending = [tp for tp in pending if tp.partition not in found and top[tp] > begins[tp]]
    return found
