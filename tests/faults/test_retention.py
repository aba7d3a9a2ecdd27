"""A revocation topic whose retention is shorter than tokens live is reported, not accepted
silently: the SDK logs a WARNING and shows it in ``stats()["retention"]``. ``revocast status``
applies the same rule (``tests/revocast`` covers it)."""

from __future__ import annotations

import logging

import pytest

from consumer_sdk import Revocast
from revocation_events import KafkaSettings
from tests._kafka_fixtures import MakeTopic
from tests.consumer_sdk._helpers import settings
from tests.faults._figures import record_figures

pytestmark = pytest.mark.kafka

HOUR = 3600.0


def ready_client(bootstrap: str, topic: str) -> Revocast:
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
    rc = Revocast(settings(kafka=kafka, max_token_lifetime=HOUR))
    assert rc.wait_until_ready(30)
    return rc


def test_retention_shorter_than_the_token_lifetime_is_reported_in_stats_and_logged(
    kafka_bootstrap: str, make_topic: MakeTopic, caplog: pytest.LogCaptureFixture
) -> None:
    topic = make_topic(partitions=1, retention_ms=int(HOUR / 2 * 1000))
    with (
        caplog.at_level(logging.WARNING, logger="consumer_sdk"),
        ready_client(kafka_bootstrap, topic) as rc,
    ):
        retention = rc.stats()["retention"]
    assert retention == {
        "retention_ms": int(HOUR / 2 * 1000),
        "min_safe_ms": int(2 * HOUR * 1000),
        "ok": False,
    }
    warnings = [r for r in caplog.records if "retention.ms" in r.getMessage()]
    assert [r.levelno for r in warnings] == [logging.WARNING]
    assert topic in warnings[0].getMessage()
    record_figures("short_retention", misconfigurations=1, detected=int(not retention["ok"]))


def test_retention_of_twice_the_token_lifetime_is_accepted_without_warning(
    kafka_bootstrap: str, make_topic: MakeTopic, caplog: pytest.LogCaptureFixture
) -> None:
    topic = make_topic(partitions=1, retention_ms=int(2 * HOUR * 1000))
    with (
        caplog.at_level(logging.WARNING, logger="consumer_sdk"),
        ready_client(kafka_bootstrap, topic) as rc,
    ):
        assert rc.stats()["retention"]["ok"] is True
    assert not [r for r in caplog.records if "retention.ms" in r.getMessage()]
