"""``OpsSettings.from_env``: the operator commands read the streams worker's settings with the
worker's own code, so ``rebuild-state`` creates what the worker would."""

from __future__ import annotations

import pytest

from revocast.ops import OpsSettings
from revocation_events import SettingsError, SigningKey, public_key_spec

KEYS = public_key_spec(SigningKey.hmac("k1", b"k" * 32))


def test_the_workers_state_topic_and_replication_settings_are_read_from_the_environment() -> None:
    settings = OpsSettings.from_env(
        environ={
            "REVOCAST_EVENT_KEYS": KEYS,
            "REVOCAST_STREAMS_REPLICATION_FACTOR": "3",
            "REVOCAST_STREAMS_STATE_SEGMENT_MS": "600000",
            "REVOCAST_STREAMS_STATE_MIN_COMPACTION_LAG_MS": "1000",
            "REVOCAST_STREAMS_STATE_DELETE_RETENTION_MS": "2000",
            "REVOCAST_STREAMS_APP_ID": "rules-eu",
        }
    )
    worker = settings.worker_settings()
    assert worker.replication_factor == 3
    assert (
        worker.state_segment_ms,
        worker.state_min_compaction_lag_ms,
        worker.state_delete_retention_ms,
    ) == (600_000, 1_000, 2_000)
    assert worker.app_id == "rules-eu"
    assert worker.kafka == settings.kafka


def test_unsigned_development_settings_still_read_the_workers_settings() -> None:
    settings = OpsSettings.from_env(
        environ={
            "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true",
            "REVOCAST_STREAMS_REPLICATION_FACTOR": "2",
        }
    )
    assert settings.worker_settings().replication_factor == 2


def test_a_bad_worker_setting_is_refused_naming_it() -> None:
    with pytest.raises(SettingsError, match="state_segment_ms"):
        OpsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEYS, "REVOCAST_STREAMS_STATE_SEGMENT_MS": "5"}
        )


def test_no_event_keys_is_refused_with_the_operator_commands_own_message() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_ALLOW_UNSIGNED_EVENTS"):
        OpsSettings.from_env(environ={})


def test_the_state_topic_is_the_one_the_worker_and_the_sdks_are_told() -> None:
    """``rebuild-state`` used to write ``<log>.state`` whatever REVOCAST_STATE_TOPIC said."""
    env = {"REVOCAST_EVENT_KEYS": KEYS, "REVOCAST_TOPIC": "rev"}
    assert OpsSettings.from_env(environ=env).worker_settings().state_topic == "rev.state"
    told = OpsSettings.from_env(environ={**env, "REVOCAST_STATE_TOPIC": "acme.rev-state"})
    assert told.worker_settings().state_topic == "acme.rev-state"
    unsigned = {"OPS_ALLOW_UNSIGNED_EVENTS": "true", "OPS_STATE_TOPIC": "eu.state"}
    prefixed = OpsSettings.from_env("OPS_", environ=unsigned)
    assert prefixed.worker_settings().state_topic == "eu.state"


@pytest.mark.parametrize(
    "overrides",
    [
        {"REVOCAST_STATE_TOPIC": "rev"},
        {"REVOCAST_STATE_TOPIC": "both", "REVOCAST_SNAPSHOT_TOPIC": "both"},
    ],
    ids=["log-topic", "same-as-snapshots"],
)
def test_a_state_topic_the_worker_refuses_is_refused_here_too(overrides: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="needs a topic of its own"):
        OpsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEYS, "REVOCAST_TOPIC": "rev", **overrides}
        )


@pytest.mark.parametrize("lifetime", ["nan", "inf", "-1", "0", "1e300"])
def test_a_token_lifetime_the_sdk_would_refuse_is_refused_naming_it(lifetime: str) -> None:
    # nan was accepted: every retention and replay-window comparison with it is false.
    with pytest.raises(SettingsError, match="REVOCAST_MAX_TOKEN_LIFETIME must be > 0"):
        OpsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEYS, "REVOCAST_MAX_TOKEN_LIFETIME": lifetime}
        )
