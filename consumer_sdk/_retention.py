"""Misconfiguration check: does the revocation topic keep events as long as tokens live?

A revocation matters until the last token it covers expires, up to ``max_token_lifetime``
after it is appended, and an SDK that starts later must still find it when it replays the
log. Kafka deletes older segments silently, so a retention shorter than that makes replaying
services accept revoked tokens with no error anywhere. The rule is the producer's
(:func:`producer.min_retention`, also applied by ``revocast status``): at least twice the
longest token lifetime, which absorbs clock skew and consumers that fall behind.

Checked once per source, from the sync thread (never on the request path); a cluster that
refuses ``DescribeConfigs`` is logged and not treated as a failure.
"""

from __future__ import annotations

import logging
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource
from kafka.errors import KafkaError

from consumer_sdk._settings import ConsumerSettings
from revocation_events import closing_on_failure

__all__ = ["check_retention", "min_retention_ms"]

_log = logging.getLogger("consumer_sdk")


def min_retention_ms(settings: ConsumerSettings) -> int:
    """The shortest safe ``retention.ms`` for tokens living up to ``max_token_lifetime``."""
    return int(2 * settings.max_token_lifetime * 1000)


def check_retention(settings: ConsumerSettings) -> dict[str, Any]:
    """Describe the topic's ``retention.ms`` and judge it; log a WARNING when too short.

    Returns what :meth:`Revocast.stats` reports under ``"retention"``: ``retention_ms``
    (``-1`` = unlimited, ``None`` = could not be read), ``min_safe_ms`` and ``ok``.
    """
    topic = settings.kafka.topic
    floor = min_retention_ms(settings)
    report: dict[str, Any] = {"retention_ms": None, "min_safe_ms": floor, "ok": None}
    try:
        admin = closing_on_failure(
            KafkaAdminClient, settings.kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG)
        )
    except KafkaError as exc:
        _log.info("could not check the retention of %r: %s", topic, exc)
        return report
    try:
        described = admin.describe_configs([ConfigResource("TOPIC", topic, ["retention.ms"])])
        retention_ms = int(described["topic"][topic]["retention.ms"]["value"])
    except (KafkaError, KeyError, TypeError, ValueError) as exc:
        _log.info("could not check the retention of %r: %s", topic, exc)
        return report
    finally:
        admin.close()
    ok = retention_ms == -1 or retention_ms >= floor
    report.update(retention_ms=retention_ms, ok=ok)
    if not ok:
        _log.warning(
            "revocation topic %r keeps events for %.0fs, less than twice max_token_lifetime "
            "(%.0fs): services that start or restart later miss revocations of tokens that "
            "are still valid; raise retention.ms to at least %d",
            topic,
            retention_ms / 1000,
            settings.max_token_lifetime,
            floor,
        )
    return report
