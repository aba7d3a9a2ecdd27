"""Creates the topics the worker writes (faust only creates its own changelogs)."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import ConfigResource
from kafka.errors import KafkaError, TopicAlreadyExistsError

from consumer_sdk._marker import last_markers
from producer._topic import broker_count, default_min_insync_replicas, default_replication_factor
from revocation_events import RevocastError
from streams._settings import StreamsSettings

__all__ = [
    "Resume",
    "StreamsError",
    "cluster_replication",
    "prepare_topics",
    "replication_config",
    "resolve_replication",
    "resume_offsets",
    "state_topic_config",
]

logger = logging.getLogger("streams")

_TOPIC_WAIT_MS = 15_000


class StreamsError(RevocastError):
    """The worker cannot run: a missing log topic, mismatched partitions, an unreachable
    cluster."""


def resolve_replication(settings: StreamsSettings, brokers: int) -> StreamsSettings:
    """``settings`` with the replication factor of the worker's topics decided: as set, or
    when unset (auto) the log topic's default for a cluster of ``brokers``, min(3, brokers)."""
    if settings.replication_factor is not None:
        return settings
    return dataclasses.replace(settings, replication_factor=default_replication_factor(brokers))


def cluster_replication(admin: Any, settings: StreamsSettings) -> StreamsSettings:
    """:func:`resolve_replication` for the cluster ``admin`` talks to (its brokers are
    counted only when the factor is unset); logs the outcome."""
    if settings.replication_factor is None:
        brokers = broker_count(admin)
        settings = resolve_replication(settings, brokers)
        source = f"auto, {brokers} broker(s)"
    else:
        source = "REVOCAST_STREAMS_REPLICATION_FACTOR"
    rf = settings.replication_factor
    assert rf is not None
    logger.log(
        logging.INFO if rf >= 3 else logging.WARNING,
        "topics created for the worker get replication factor %d (%s) and min.insync.replicas %d%s",
        rf,
        source,
        default_min_insync_replicas(rf),
        "" if rf >= 3 else " (fewer than 3 replicas: for a development cluster only)",
    )
    return settings


def replication_config(settings: StreamsSettings) -> dict[str, str]:
    """``min.insync.replicas`` for the replication factor, as on the log topic: 2 from 3
    replicas, else 1. Empty while the factor is unresolved (see :func:`cluster_replication`)."""
    rf = settings.replication_factor
    return {} if rf is None else {"min.insync.replicas": str(default_min_insync_replicas(rf))}


def state_topic_config(settings: StreamsSettings) -> dict[str, str]:
    """Compact-only, so every live rule stays; small segments so compaction keeps up."""
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(settings.state_segment_ms),
        "min.compaction.lag.ms": str(settings.state_min_compaction_lag_ms),
        "delete.retention.ms": str(settings.state_delete_retention_ms),
        "min.cleanable.dirty.ratio": "0.1",
        **replication_config(settings),
    }


def prepare_topics(settings: StreamsSettings) -> tuple[StreamsSettings, int]:
    """Resolve the replication factor (:func:`cluster_replication`), check the log topic,
    create missing output topics; return the settings with the factor resolved (for the
    worker's other topics) and the log's partition count.

    State, ticks and changelog topics must have as many partitions as the log: state
    partition *p* summarises log partition *p*, and tick *p* sweeps it.
    """
    try:
        admin = KafkaAdminClient(**settings.kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG))
    except KafkaError as exc:
        raise StreamsError(f"cannot reach Kafka at {settings.kafka.bootstrap_servers}") from exc
    try:
        return _prepare(admin, settings)
    except KafkaError as exc:
        raise StreamsError(f"preparing topics failed: {exc}") from exc
    finally:
        admin.close()


def _partitions(admin: Any, topic: str) -> int | None:
    described = admin.describe_topics([topic])
    info = described[0] if described else None
    if info is None or info.get("error_code", 0) != 0:
        return None
    return len(info.get("partitions") or ())


def _prepare(admin: Any, settings: StreamsSettings) -> tuple[StreamsSettings, int]:
    partitions = _partitions(admin, settings.log_topic)
    if not partitions:
        raise StreamsError(f"log topic {settings.log_topic!r} does not exist; create it first")
    settings = cluster_replication(admin, settings)
    rf = settings.replication_factor
    replicated = replication_config(settings)
    wanted: dict[str, dict[str, Any]] = {
        settings.state_topic: {"partitions": partitions, "configs": state_topic_config(settings)},
        settings.ticks_topic: {
            "partitions": partitions,
            "configs": {"cleanup.policy": "delete", "retention.ms": "3600000", **replicated},
        },
        # faust would create the changelogs itself, but a changelog created after the worker
        # fetched metadata shows 0 partitions to faust's co-partitioning check, which then
        # crashes the agent in a loop; creating them here first avoids that race.
        **{
            name: {
                "partitions": partitions,
                "configs": {"cleanup.policy": "compact", **replicated},
            }
            for name in settings.changelog_topics
        },
        settings.stats_topic: {"partitions": 1, "configs": replicated},
        settings.alerts_topic: {"partitions": 1, "configs": replicated},
    }
    copartitioned = {settings.state_topic, settings.ticks_topic, *settings.changelog_topics}
    missing: dict[str, dict[str, Any]] = {}
    for name, spec in wanted.items():
        existing = _partitions(admin, name)
        if existing is not None and name == settings.state_topic:
            _check_compact_only(admin, name)
        if existing is None:
            missing[name] = {
                "num_partitions": spec["partitions"],
                "replication_factor": rf,
                "configs": spec["configs"],
            }
        elif name in copartitioned and existing != partitions:
            raise StreamsError(
                f"topic {name!r} has {existing} partitions but the log has {partitions}"
            )
    if missing:
        logger.info("creating topics %s", sorted(missing))
        created = admin.create_topics(missing, raise_errors=False)
        # Another worker creating them at the same time is fine; any other refusal (a
        # replication factor above the broker count, a bad config) is the operator's to fix.
        refused = [
            f"{topic.get('name')}: {topic.get('error_message') or topic.get('error_code')}"
            for topic in created.get("topics", ())
            if topic.get("error_code", 0) not in (0, TopicAlreadyExistsError.errno)
        ]
        if refused:
            raise StreamsError(f"the cluster refused to create topics: {'; '.join(refused)}")
        admin.wait_for_topics(list(missing), timeout_ms=_TOPIC_WAIT_MS)
    return settings, partitions


def _check_compact_only(admin: Any, topic: str) -> None:
    """Refuse a state topic made beforehand with time or size retention: it would delete the
    records of rules that never expire (blocks, revoked keys) while the markers, written
    every tick, still promise them."""
    try:
        described = admin.describe_configs(
            [ConfigResource("TOPIC", topic, ["cleanup.policy"])], config_filter="all"
        )
    except KafkaError as exc:  # e.g. no DescribeConfigs ACL: do not refuse to run for it
        logger.warning("cannot check the cleanup.policy of state topic %r: %s", topic, exc)
        return
    entry = described.get("topic", {}).get(topic, {}).get("cleanup.policy") or {}
    policy = entry.get("value")
    if policy is None or {p.strip() for p in str(policy).split(",")} != {"compact"}:
        raise StreamsError(
            f"state topic {topic!r} has cleanup.policy={policy}: it must be 'compact' alone "
            "(kafka-configs --alter --entity-type topics --entity-name "
            f"{topic} --add-config cleanup.policy=compact)"
        )


@dataclass(frozen=True, slots=True)
class Resume:
    """Where the worker resumes one log partition, and the state topic's last marker for it."""

    start: int
    marker: int | None
    """The last offset marker in the state partition (``None``: none), usable or not."""


def resume_offsets(
    settings: StreamsSettings,
    partitions: Iterable[int],
    timeout: float = 60.0,
    *,
    log_resume: bool = True,
) -> dict[int, Resume]:
    """Where the worker resumes each log partition: right after the partition's last offset
    marker in the state topic, or at the log's first offset when there is no usable marker
    (none, one beyond the log's end, or one older than the log's first offset).

    A marker is written only once every effect of the offsets it covers was acknowledged by
    the broker (state records and the rules table's changelog), so re-reading from there
    repairs whatever a crash lost after it, whatever the group's committed offset says. When
    the committed offset is lower, the worker resumes there instead (re-reading more is
    harmless, and the statistics windows count those records at least once).
    """
    wanted = sorted(set(partitions))
    if not wanted:
        return {}
    deadline = time.monotonic() + timeout
    log_tps = [TopicPartition(settings.log_topic, p) for p in wanted]
    try:
        consumer = KafkaConsumer(
            **settings.kafka.client_config(KafkaConsumer.DEFAULT_CONFIG), enable_auto_commit=False
        )
        try:
            begins = consumer.beginning_offsets(log_tps)
            ends = consumer.end_offsets(log_tps)
            state_tps = [TopicPartition(settings.state_topic, p) for p in wanted]
            # Whatever incarnation of the log a marker names: seeding judges that (_seed).
            found = last_markers(
                consumer,
                state_tps,
                consumer.end_offsets(state_tps),
                settings.log_topic,
                stop=_deadline(deadline, f"reading state partitions {wanted} timed out"),
                poll_timeout_ms=500,
                request_timeout_ms=settings.kafka.request_timeout_ms,
            )
        finally:
            consumer.close()
        committed = _committed(settings, log_tps)
    except KafkaError as exc:
        raise StreamsError(f"cannot read where to resume the log: {exc}") from exc
    starts: dict[int, Resume] = {}
    for tp in log_tps:
        p = tp.partition
        begin, end = begins[tp], ends[tp]
        marker = found[p].offset if p in found else None
        if marker is not None and begin - 1 <= marker < end:
            start = marker + 1
        else:
            if marker is not None:
                logger.warning(
                    "offset marker %d of log partition %d is outside the log's %d..%d: "
                    "re-reading the partition from its first offset",
                    marker,
                    p,
                    begin,
                    end,
                )
            start = begin
        done = committed.get(p)
        if done is not None and done >= 0:
            start = min(start, max(done, begin))
        starts[p] = Resume(start, marker)
        if not log_resume:  # a caller that only wants the markers (the snapshotter)
            continue
        logger.info(
            "log partition %d (offsets %d..%d): last offset marker %s, committed %s: "
            "resuming at %d",
            p,
            begin,
            end,
            marker,
            done,
            start,
        )
    return starts


def _deadline(deadline: float, message: str) -> Callable[[], bool]:
    """A ``stop`` for :func:`consumer_sdk._marker.last_markers` that raises once past
    ``deadline`` (``time.monotonic``)."""

    def passed() -> bool:
        if time.monotonic() > deadline:
            raise StreamsError(message)
        return False

    return passed


def _committed(settings: StreamsSettings, tps: list[Any]) -> dict[int, int]:
    admin = KafkaAdminClient(**settings.kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG))
    try:
        group = settings.app_id
        offsets = admin.list_group_offsets({group: tps}).get(group, {})
    finally:
        admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}
