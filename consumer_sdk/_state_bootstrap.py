"""Bootstrapping from what the streams worker keeps (``ConsumerSettings.bootstrap = "state"``).

Per log partition, the first source that can be used wins; the partition's log replay then
starts where that source is complete:

1. a **snapshot** from ``<log>.snapshots`` (:mod:`consumer_sdk._snapshot` defines the format,
   :mod:`consumer_sdk._snapshot_reader` reads it), only when ``snapshot_keys`` are configured:
   verified, loaded in bulk into the store; the log resumes at the manifest's offset + 1. A
   refused snapshot is logged and counted by reason (``stats()["bootstrap"]["snapshot_refused"]``);
2. the compacted **state topic** ``<log>.state`` (the streams package docstring defines the
   protocol, :mod:`consumer_sdk._state_topic` reads it): rule records are passed to the sink
   exactly like log records, and offset markers ``__offsets__:<p>`` promise that every effect
   of log partition *p* up to the marker's offset precedes the marker; the log resumes at
   marker + 1;
3. otherwise the **log**, replayed as in ``bootstrap="log"``.

Events between a snapshot's or marker's offset and the end of that source are replayed
twice, which is harmless: applying an event is idempotent. A snapshot or marker at or beyond
the log's end, or older than the log's first offset (the records in between are gone), is
not used; nor is one of another incarnation of the log (deleted and recreated under the same
name: its offsets now mean other records), told by the log's topic id (KIP-516), asked once
per bootstrap. A state partition whose marker is refused so is not read at all (its rules may
be the deleted log's); refusals are logged and counted by reason
(``stats()["bootstrap"]["state_refused"]``, as ``snapshot_refused``). The state topic is
unusable as a whole when it does not exist or has another partition count than the log. A
source the service may not read (an ACL covering the log only) is skipped with a warning, as
if absent: the log replay is always right.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kafka import TopicPartition
from kafka.errors import AuthorizationError

from consumer_sdk._settings import ConsumerSettings
from consumer_sdk._snapshot_reader import covers, load_snapshots, topic_id
from consumer_sdk._source import UpdateSink
from consumer_sdk._state_topic import load_state_topic

__all__ = [
    "Plan",
    "plan_bootstrap",
]

_log = logging.getLogger("consumer_sdk")


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
    log_id = topic_id(consumer, settings.kafka.topic)  # one lookup for snapshots and state

    if settings.snapshot_keys:
        try:
            snap = load_snapshots(
                consumer,
                settings,
                sink,
                bounds,
                log_partitions=len(tps),
                log_id=log_id,
                stop=stop,
            )
        except AuthorizationError as exc:
            why = _not_authorized("snapshot", exc)
            stats["snapshot"] = {"used": False, "why": why}
            stats["snapshot_refused"] = {}
        else:
            stats["snapshot"] = snap.stats()
            stats["snapshot_refused"] = dict(snap.refused)
            for p, offset in snap.offsets.items():
                starts[p] = offset + 1
                source[p] = "snapshot"
    else:
        stats["snapshot"] = {"used": False, "why": "no snapshot_keys configured"}
        stats["snapshot_refused"] = {}

    left = [p for p in bounds if p not in starts]
    stats["state_refused"] = {}
    if left:
        try:
            load = load_state_topic(
                consumer,
                settings,
                sink,
                log_partitions=len(tps),
                partitions=left,
                stop=stop,
                topic_id=log_id,
            )
        except AuthorizationError as exc:
            load = None
            stats["fallback"] = _not_authorized("state topic", exc)
        if load is None:
            stats.setdefault("fallback", "state topic unusable")
        else:
            replay = []
            for p in left:
                marker = load.markers.get(p)
                if marker is None or not covers(marker, bounds[p]):
                    replay.append(p)
                    continue
                starts[p] = marker + 1
                source[p] = "state"
            if replay:
                _log.info(
                    "no usable offset marker for log partitions %s: replaying them from the log",
                    replay,
                )
            stats["state_refused"] = dict(Counter(load.refused.values()))
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


def _not_authorized(what: str, exc: AuthorizationError) -> str:
    """An ACL that lets the service read the log but not this source: fall back (the log
    replay is always right) instead of retrying forever and never becoming ready."""
    why = f"{what} not readable ({type(exc).__name__}): bootstrapping from the log"
    _log.warning("%s; grant this service Read on it to start faster", why)
    return why
