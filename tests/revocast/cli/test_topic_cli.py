from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaAdminClient

from revocast.cli import main
from revocast.cli._common import CommandError
from revocast.cli._topic import parse_duration
from tests._kafka_fixtures import MakeTopic


@pytest.fixture
def topic_env(monkeypatch: pytest.MonkeyPatch, kafka_bootstrap: str) -> Iterator[str]:
    name = f"cli-topic-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", name)
    monkeypatch.delenv("REVOCAST_MAX_TOKEN_LIFETIME", raising=False)
    yield name
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        if name in admin.list_topics():
            admin.delete_topics([name])
    finally:
        admin.close()


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("36h", 129600), ("7d", 604800)]
)
def test_durations_parse_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text, option="--retention") == seconds


def test_bad_duration_is_a_user_error() -> None:
    with pytest.raises(CommandError, match="--retention"):
        parse_duration("a week", option="--retention")


@pytest.mark.kafka
def test_topic_ensure_creates_then_reports_existing(
    topic_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["topic", "ensure", "--partitions", "2", "--retention", "3h"]) == 0
    assert f"topic {topic_env} created: 2 partitions" in capsys.readouterr().out
    assert main(["topic", "ensure", "--partitions", "2", "--retention", "3h"]) == 0
    assert f"topic {topic_env} exists" in capsys.readouterr().out


@pytest.mark.kafka
def test_topic_ensure_refuses_short_retention_with_exit_2(
    topic_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["topic", "ensure", "--retention", "1h", "--max-token-lifetime", "1h"])
    assert code == 2
    assert "twice the max token lifetime" in capsys.readouterr().err


@pytest.mark.kafka
def test_topic_ensure_exits_1_and_prints_problems_of_an_unsafe_topic(
    make_topic: MakeTopic,
    kafka_bootstrap: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = make_topic(partitions=6, retention_ms=60_000)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", name)
    assert main(["topic", "ensure"]) == 1
    assert "UNSAFE: retention.ms=60000" in capsys.readouterr().out


@pytest.mark.parametrize("command", [["topic", "ensure"], ["status"]])
@pytest.mark.parametrize("lifetime", ["nan", "-5", "0", "inf"])
def test_a_token_lifetime_that_is_not_a_positive_duration_is_a_settings_error(
    command: list[str],
    lifetime: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Taken as is (0 became 1 h for status): with nan or a negative lifetime every retention
    # check passes, and status reported a log topic that loses revocations as ok.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # never reached
    monkeypatch.setenv("REVOCAST_MAX_TOKEN_LIFETIME", lifetime)
    assert main(command) == 2
    assert "REVOCAST_MAX_TOKEN_LIFETIME must be > 0" in capsys.readouterr().err
