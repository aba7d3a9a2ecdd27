"""Provisioning the revocation topic: create it safely, or report why an existing one is not.

Rules (each violation is explained in the error or the report):

* ``retention.ms >= 2 * max_token_lifetime`` (:func:`min_retention`). A revocation matters
  until the last token it covers expires, up to one token lifetime after it is appended, and a
  consumer that starts by replaying the topic must still find it. The factor two absorbs clock
  skew between issuer and brokers and consumers that fall behind. The default is
  ``max(7 days, 2 * lifetime)``. Events with no expiry (blocks, revoked keys) outlive any
  retention only through a compacted snapshot of the state, not through this topic.
* ``unclean.leader.election.enable=false``: an out-of-sync replica elected leader truncates
  the acknowledged revocations it missed.
* ``cleanup.policy=delete``: compaction keeps only the last record per key and would drop
  earlier revocations of the same subject. ``retention.bytes=-1``: size-based deletion could
  drop events before their time.
* ``replication_factor`` defaults to 3, or to the broker count when the cluster has fewer
  brokers (a local single-broker cluster gets 1, with a warning); an existing topic below that
  is a problem. ``min.insync.replicas``
  defaults to 2 when the replication factor is at least 3, else 1, so ``acks=all`` survives
  one broker loss without blocking publishes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource
from kafka.errors import KafkaError, TopicAlreadyExistsError

from producer._errors import PublishError, UnsafeTopicConfigError
from producer._kafka import closing_on_failure, require_reachable
from revocation_events import KafkaSettings

__all__ = [
    "TopicReport",
    "broker_count",
    "default_min_insync_replicas",
    "default_replication_factor",
    "ensure_topic",
    "min_retention",
]

_WEEK = 7 * 24 * 3600.0
_CHECKED_CONFIGS = (
    "retention.ms",
    "retention.bytes",
    "cleanup.policy",
    "min.insync.replicas",
    "unclean.leader.election.enable",
)
_UNKNOWN_TOPIC = 3


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What :func:`ensure_topic` found or made. ``problems`` make the topic unsafe to use;
    ``warnings`` are acceptable for development only."""

    topic: str
    created: bool
    partitions: int
    replication_factor: int
    configs: Mapping[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def min_retention(max_token_lifetime: float) -> float:
    """The shortest safe ``retention`` (seconds) for tokens living up to ``max_token_lifetime``."""
    return 2 * max_token_lifetime


def broker_count(admin: Any) -> int:
    """How many brokers the cluster's metadata lists (``admin``: a ``KafkaAdminClient``)."""
    return len(admin.describe_cluster()["brokers"])


def default_replication_factor(brokers: int) -> int:
    """3, or every broker of a smaller cluster (at least 1)."""
    return max(1, min(3, brokers))


def default_min_insync_replicas(replication_factor: int) -> int:
    """2 from a replication factor of 3, else 1: ``acks=all`` writes then survive one broker
    loss without blocking."""
    return 2 if replication_factor >= 3 else 1


def ensure_topic(
    kafka: KafkaSettings,
    *,
    max_token_lifetime: float,
    partitions: int = 6,
    replication_factor: int | None = None,
    retention: float | None = None,
    min_insync_replicas: int | None = None,
    timeout: float = 30.0,
) -> TopicReport:
    """Create ``kafka.topic`` with safe settings, or check the existing one. Idempotent.

    Raises :class:`UnsafeTopicConfigError` (before contacting Kafka) when the requested
    settings are unsafe, and :class:`PublishError` when Kafka fails. Unsafe settings of an
    existing topic are not changed; they are listed in :attr:`TopicReport.problems`.
    """
    # NaN passes every comparison below and inf overflows int(): refuse both up front.
    for name, value in (
        ("max_token_lifetime", max_token_lifetime),
        ("retention", retention),
        ("timeout", timeout),
    ):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UnsafeTopicConfigError(f"{name} must be a finite number of seconds > 0")
    floor = min_retention(max_token_lifetime)
    if retention is None:
        retention = max(_WEEK, floor)
    elif retention < floor:
        raise UnsafeTopicConfigError(
            f"retention {_human(retention)} is shorter than twice the max token lifetime "
            f"({_human(floor)}): a consumer replaying the topic would miss revocations of "
            "tokens that are still valid"
        )
    if partitions < 1:
        raise UnsafeTopicConfigError(f"partitions must be >= 1, got {partitions}")
    if replication_factor is not None and replication_factor < 1:
        raise UnsafeTopicConfigError(f"replication factor must be >= 1, got {replication_factor}")
    if (
        replication_factor is not None
        and min_insync_replicas is not None
        and not 1 <= min_insync_replicas <= replication_factor
    ):
        raise UnsafeTopicConfigError(
            f"min.insync.replicas={min_insync_replicas} must be between 1 and the replication "
            f"factor {replication_factor}, or every acks=all publish fails"
        )

    config = kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG)
    config["bootstrap_timeout_ms"] = int(timeout * 1000)
    require_reachable(config)
    try:
        admin = closing_on_failure(KafkaAdminClient, config)
    except KafkaError as exc:
        raise PublishError(f"cannot connect to Kafka: {exc}") from exc
    try:
        return _ensure(
            admin,
            kafka.topic,
            partitions=partitions,
            replication_factor=replication_factor,
            retention_ms=int(retention * 1000),
            floor_ms=int(floor * 1000),
            min_isr=min_insync_replicas,
            timeout_ms=int(timeout * 1000),
        )
    except KafkaError as exc:
        raise PublishError(f"cannot provision topic {kafka.topic!r}: {exc}") from exc
    finally:
        admin.close()


def _ensure(
    admin: Any,
    topic: str,
    *,
    partitions: int,
    replication_factor: int | None,
    retention_ms: int,
    floor_ms: int,
    min_isr: int | None,
    timeout_ms: int,
) -> TopicReport:
    brokers = broker_count(admin)
    rf = (
        replication_factor
        if replication_factor is not None
        else default_replication_factor(brokers)
    )
    isr = min_isr if min_isr is not None else default_min_insync_replicas(rf)
    if not 1 <= isr <= rf:
        raise UnsafeTopicConfigError(
            f"min.insync.replicas={isr} must be between 1 and the replication factor {rf}"
        )
    created = False
    if not _exists(admin, topic):
        configs = {
            "cleanup.policy": "delete",
            "retention.ms": str(retention_ms),
            "retention.bytes": "-1",
            "min.insync.replicas": str(isr),
            # Explicit: a cluster default of true would apply to the topic otherwise.
            "unclean.leader.election.enable": "false",
        }
        try:
            spec = {"num_partitions": partitions, "replication_factor": rf, "configs": configs}
            admin.create_topics(
                {topic: spec},
                timeout_ms=timeout_ms,
                wait_for_metadata=True,
            )
            created = True
        except TopicAlreadyExistsError:
            pass  # created concurrently: check it like any existing topic
    return _check(
        admin,
        topic,
        created=created,
        want_partitions=partitions,
        # Unless asked otherwise, an existing topic must meet the default a new one gets.
        want_rf=rf,
        floor_ms=floor_ms,
    )


def _exists(admin: Any, topic: str) -> bool:
    (meta,) = admin.describe_topics([topic])
    if meta["error_code"] == _UNKNOWN_TOPIC:
        return False
    if meta["error_code"] != 0:
        raise PublishError(f"cannot describe topic {topic!r} (Kafka error {meta['error_code']})")
    return True


def _check(
    admin: Any,
    topic: str,
    *,
    created: bool,
    want_partitions: int,
    want_rf: int,
    floor_ms: int,
) -> TopicReport:
    (meta,) = admin.describe_topics([topic])
    parts = meta["partitions"]
    count = len(parts)
    rf = min((len(p["replica_nodes"]) for p in parts), default=0)
    described = admin.describe_configs(
        [ConfigResource("TOPIC", topic, list(_CHECKED_CONFIGS))], config_filter="all"
    )
    raw = described["topic"][topic]
    configs = {name: str(raw[name]["value"]) for name in _CHECKED_CONFIGS if name in raw}
    problems: list[str] = []
    warnings: list[str] = []

    retention_ms = int(configs.get("retention.ms", "-1"))
    if retention_ms != -1 and retention_ms < floor_ms:
        problems.append(
            f"retention.ms={retention_ms} ({_human(retention_ms / 1000)}) is shorter than twice "
            f"the max token lifetime ({_human(floor_ms / 1000)}): consumers replaying the topic "
            "would miss revocations of tokens that are still valid"
        )
    if int(configs.get("retention.bytes", "-1")) != -1:
        problems.append(
            f"retention.bytes={configs['retention.bytes']} can delete revocations before "
            "retention.ms; set it to -1"
        )
    if "compact" in configs.get("cleanup.policy", "delete"):
        problems.append(
            f"cleanup.policy={configs['cleanup.policy']}: compaction keeps only the last event "
            "per subject and drops earlier revocations; use 'delete'"
        )
    if configs.get("unclean.leader.election.enable", "false").lower() == "true":
        problems.append(
            "unclean.leader.election.enable=true: a replica that missed acknowledged "
            "revocations can become leader and drop them; set it to false"
        )
    if count < want_partitions:
        problems.append(
            f"{count} partitions, fewer than the {want_partitions} asked for (adding partitions "
            "later moves subjects to other partitions and can reorder their in-flight events)"
        )
    if rf < want_rf:
        problems.append(
            f"replication factor {rf}, lower than {want_rf} (asked for, or by default the "
            "smaller of 3 and the broker count): losing a broker can lose revocations"
        )
    isr = int(configs.get("min.insync.replicas", "1"))
    if isr > rf:
        problems.append(
            f"min.insync.replicas={isr} exceeds the replication factor {rf}: "
            "every acks=all publish fails"
        )
    elif rf >= 3 and isr < 2:
        problems.append(
            f"min.insync.replicas={isr} with replication factor {rf}: an acknowledged "
            "revocation may live on one broker only; set it to 2"
        )
    elif rf > 1 and isr == rf:
        warnings.append(
            f"min.insync.replicas={isr} equals the replication factor: "
            "publishing stops whenever one broker is down"
        )
    if rf < 3:
        warnings.append(
            f"replication factor {rf}: losing a broker can lose revocations "
            "(acceptable for a local development cluster only)"
        )
    return TopicReport(
        topic=topic,
        created=created,
        partitions=count,
        replication_factor=rf,
        configs=configs,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def _human(seconds: float) -> str:
    if seconds >= 86400 and seconds % 3600 == 0:
        return f"{seconds / 86400:g}d"
    if seconds >= 3600:
        return f"{seconds / 3600:g}h"
    return f"{seconds:g}s"
