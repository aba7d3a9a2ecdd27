"""Creates the topics the worker writes (faust only creates its own changelogs)."""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from revocation_events import RevocastError
from streams._settings import StreamsSettings

__all__ = ["StreamsError", "prepare_topics", "state_topic_config"]

logger = logging.getLogger("streams")

_TOPIC_WAIT_MS = 15_000


class StreamsError(RevocastError):
    """The worker cannot run: a missing log topic, mismatched partitions, an unreachable
    cluster."""


def state_topic_config(settings: StreamsSettings) -> dict[str, str]:
    """Compact-only, so every live rule stays; small segments so compaction keeps up."""
    return {
        "cleanup.policy": "compact",
        "segment.ms": str(settings.state_segment_ms),
        "min.compaction.lag.ms": str(settings.state_min_compaction_lag_ms),
        "delete.retention.ms": str(settings.state_delete_retention_ms),
        "min.cleanable.dirty.ratio": "0.1",
    }


def prepare_topics(settings: StreamsSettings) -> int:
    """Check the log topic, create missing output topics; return the log's partition count.

    State, ticks and changelog topics must have as many partitions as the log: state
    partition *p* summarises log partition *p*, and tick *p* sweeps it.
    """
    try:
        admin = KafkaAdminClient(**settings.kafka.client_config())
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


def _prepare(admin: Any, settings: StreamsSettings) -> int:
    partitions = _partitions(admin, settings.log_topic)
    if not partitions:
        raise StreamsError(f"log topic {settings.log_topic!r} does not exist; create it first")
    rf = settings.replication_factor
    wanted: dict[str, dict[str, Any]] = {
        settings.state_topic: {"partitions": partitions, "configs": state_topic_config(settings)},
        settings.ticks_topic: {
            "partitions": partitions,
            "configs": {"cleanup.policy": "delete", "retention.ms": "3600000"},
        },
        # faust would create the changelogs itself, but a changelog created after the worker
        # fetched metadata shows 0 partitions to faust's co-partitioning check, which then
        # crashes the agent in a loop; creating them here first avoids that race.
        **{
            name: {"partitions": partitions, "configs": {"cleanup.policy": "compact"}}
            for name in settings.changelog_topics
        },
        settings.stats_topic: {"partitions": 1, "configs": {}},
        settings.alerts_topic: {"partitions": 1, "configs": {}},
    }
    copartitioned = {settings.state_topic, settings.ticks_topic, *settings.changelog_topics}
    missing: dict[str, dict[str, Any]] = {}
    for name, spec in wanted.items():
        existing = _partitions(admin, name)
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
        admin.create_topics(missing, raise_errors=False)
        admin.wait_for_topics(list(missing), timeout_ms=_TOPIC_WAIT_MS)
    return partitions
