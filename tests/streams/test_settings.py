"""StreamsSettings.from_env: names, defaults and refusals."""

from __future__ import annotations

import pytest

from revocation_events import KafkaSettings, SettingsError, SigningKey, public_key_spec
from streams import StreamsSettings
from streams._settings import derived_topics
from tests.streams._support import KEY_SPEC


def test_settings_are_read_from_the_environment() -> None:
    settings = StreamsSettings.from_env(
        environ={
            "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
            "REVOCAST_TOPIC": "rev",
            "REVOCAST_EVENT_KEYS": KEY_SPEC,
            "REVOCAST_STREAMS_APP_ID": "app",
            "REVOCAST_STREAMS_REPLICATION_FACTOR": "3",
            "REVOCAST_STREAMS_WINDOW_SECONDS": "30",
            "REVOCAST_STREAMS_ALERT_BLOCKS_PER_WINDOW": "7",
            "REVOCAST_STREAMS_TICK_SECONDS": "0.5",
        }
    )
    assert settings.kafka.bootstrap_servers == ("k1:9092", "k2:9092")
    assert (settings.state_topic, settings.stats_topic, settings.alerts_topic) == (
        "rev.state",
        "rev.stats",
        "rev.alerts",
    )
    assert settings.ticks_topic == "app-ticks"
    assert (settings.replication_factor, settings.window_seconds) == (3, 30)
    assert (settings.alert_blocks_per_window, settings.tick_seconds) == (7, 0.5)


def test_worker_without_keys_refuses_to_start_unless_unsigned_is_allowed() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_EVENT_KEYS"):
        StreamsSettings.from_env(environ={})
    settings = StreamsSettings.from_env(environ={"REVOCAST_STREAMS_ALLOW_UNSIGNED": "yes"})
    assert settings.allow_unsigned


def test_the_worker_reads_the_sdks_name_for_accepting_unsigned_events_too() -> None:
    # One variable for every reader of the log (SDKs, the CLI, the worker).
    both = {"REVOCAST_ALLOW_UNSIGNED_EVENTS": "true", "REVOCAST_STREAMS_ALLOW_UNSIGNED": "true"}
    assert StreamsSettings.from_env(
        environ={"REVOCAST_ALLOW_UNSIGNED_EVENTS": "true"}
    ).allow_unsigned
    assert StreamsSettings.from_env(environ=both).allow_unsigned
    with pytest.raises(SettingsError, match="disagree"):
        StreamsSettings.from_env(environ={**both, "REVOCAST_STREAMS_ALLOW_UNSIGNED": "false"})
    with pytest.raises(SettingsError, match="REVOCAST_EVENT_KEYS"):
        StreamsSettings.from_env(environ={"REVOCAST_ALLOW_UNSIGNED_EVENTS": "false"})


def test_bad_value_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_STREAMS_WINDOW_SECONDS"):
        StreamsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_STREAMS_WINDOW_SECONDS": "x"}
        )


def test_malformed_keys_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_EVENT_KEYS"):
        StreamsSettings.from_env(environ={"REVOCAST_EVENT_KEYS": "nonsense"})


def test_out_of_range_value_is_refused() -> None:
    with pytest.raises(SettingsError, match="tick_seconds"):
        StreamsSettings(allow_unsigned=True, tick_seconds=0)


def test_expiry_margin_defaults_to_the_largest_sdk_leeway_and_is_read_from_the_environment() -> (
    None
):
    from consumer_sdk._settings import MAX_LEEWAY

    assert StreamsSettings(allow_unsigned=True).expiry_margin_seconds == MAX_LEEWAY
    settings = StreamsSettings.from_env(
        environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_STREAMS_EXPIRY_MARGIN_SECONDS": "30"}
    )
    assert settings.expiry_margin_seconds == 30.0
    with pytest.raises(SettingsError, match="expiry_margin_seconds"):
        StreamsSettings(allow_unsigned=True, expiry_margin_seconds=-1)


@pytest.mark.parametrize(
    "name",
    [
        "WINDOW_GRACE_SECONDS",
        "TICK_SECONDS",
        "COMMIT_INTERVAL_SECONDS",
        "SESSION_TIMEOUT_SECONDS",
        "SNAPSHOT_INTERVAL_SECONDS",
        "EXPIRY_MARGIN_SECONDS",
    ],
)
@pytest.mark.parametrize("value", ["inf", "1e30"])
def test_an_infinite_or_huge_duration_is_refused(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name.lower()):
        StreamsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, f"REVOCAST_STREAMS_{name}": value}
        )


def test_an_infinite_max_token_lifetime_is_refused() -> None:
    with pytest.raises(SettingsError, match="max_token_lifetime"):
        StreamsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_MAX_TOKEN_LIFETIME": "inf"}
        )


def test_previous_snapshot_keys_are_read_from_the_environment() -> None:
    # An HMAC key's signing spec is its verification spec: public_key_spec serves both.
    snap_2 = SigningKey.hmac("snap-2", b"2" * 32)
    snap_1 = SigningKey.hmac("snap-1", b"1" * 32)
    settings = StreamsSettings.from_env(
        environ={
            "REVOCAST_EVENT_KEYS": KEY_SPEC,
            "REVOCAST_SNAPSHOT_SIGNING_KEY": public_key_spec(snap_2),
            "REVOCAST_SNAPSHOT_PREVIOUS_KEYS": public_key_spec(snap_1),
        }
    )
    assert [k.kid for k in settings.snapshot_previous_keys] == ["snap-1"]
    assert "snapshot_previous_keys" not in repr(settings)


def test_a_previous_snapshot_key_with_the_signing_keys_id_is_refused() -> None:
    # A verifier keeps one key per id: the old one would stand in for the current one.
    snap = SigningKey.hmac("snap-1", b"1" * 32)
    with pytest.raises(SettingsError, match="REVOCAST_SNAPSHOT_PREVIOUS_KEYS"):
        StreamsSettings.from_env(
            environ={
                "REVOCAST_EVENT_KEYS": KEY_SPEC,
                "REVOCAST_SNAPSHOT_SIGNING_KEY": public_key_spec(snap),
                "REVOCAST_SNAPSHOT_PREVIOUS_KEYS": public_key_spec(
                    SigningKey.hmac("snap-1", b"x" * 32)
                ),
            }
        )


def test_malformed_previous_snapshot_keys_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_SNAPSHOT_PREVIOUS_KEYS"):
        StreamsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_SNAPSHOT_PREVIOUS_KEYS": "x"}
        )


def test_the_replication_factor_is_auto_when_unset_and_kept_when_set() -> None:
    """Unset, it used to be 1: an operator who forgot it got unreplicated state topics on a
    production cluster. Auto is resolved from the cluster at start-up (tests/streams/
    test_topics.py)."""
    assert (
        StreamsSettings.from_env(environ={"REVOCAST_EVENT_KEYS": KEY_SPEC}).replication_factor
        is None
    )
    for blank in ("", "  "):
        settings = StreamsSettings.from_env(
            environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_STREAMS_REPLICATION_FACTOR": blank}
        )
        assert settings.replication_factor is None
    settings = StreamsSettings.from_env(
        environ={"REVOCAST_EVENT_KEYS": KEY_SPEC, "REVOCAST_STREAMS_REPLICATION_FACTOR": "2"}
    )
    assert settings.replication_factor == 2


def test_a_replication_factor_below_one_is_refused_and_none_means_auto() -> None:
    assert StreamsSettings(allow_unsigned=True, replication_factor=None).replication_factor is None
    for bad in ("0", "-1"):
        with pytest.raises(SettingsError, match="replication_factor"):
            StreamsSettings.from_env(
                environ={
                    "REVOCAST_EVENT_KEYS": KEY_SPEC,
                    "REVOCAST_STREAMS_REPLICATION_FACTOR": bad,
                }
            )
    with pytest.raises(SettingsError, match="REVOCAST_STREAMS_REPLICATION_FACTOR"):
        StreamsSettings.from_env(
            environ={
                "REVOCAST_EVENT_KEYS": KEY_SPEC,
                "REVOCAST_STREAMS_REPLICATION_FACTOR": "three",
            }
        )


_SDK_ENV = {"REVOCAST_ALGORITHMS": "HS256", "REVOCAST_JWT_KEY": "k" * 32}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"REVOCAST_STATE_TOPIC": "acme.rev-state"},
        {"REVOCAST_SNAPSHOT_TOPIC": "acme.rev-snapshots", "REVOCAST_STATE_TOPIC": " "},
        {"REVOCAST_STATE_TOPIC": "acme.rev-state", "REVOCAST_SNAPSHOT_TOPIC": "acme.rev-snaps"},
    ],
    ids=["defaults", "state", "snapshots-and-blank-state", "both"],
)
@pytest.mark.parametrize("prefix", ["REVOCAST_", "EU_"])
def test_the_worker_names_its_state_and_snapshot_topics_as_an_sdk_given_the_same_environment(
    overrides: dict[str, str], prefix: str
) -> None:
    """It used to derive both from the log name only: an SDK told REVOCAST_STATE_TOPIC read a
    topic nobody wrote and replayed the log instead."""
    from consumer_sdk import ConsumerSettings
    from consumer_sdk._snapshot_reader import snapshot_topic
    from consumer_sdk._state_topic import state_topic

    env = {
        "REVOCAST_TOPIC": "rev",
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true",
        **_SDK_ENV,
        **overrides,
    }
    environ = {f"{prefix}{name.removeprefix('REVOCAST_')}": value for name, value in env.items()}
    worker = StreamsSettings.from_env(prefix, environ)
    sdk = ConsumerSettings.from_env(prefix, environ)
    assert (worker.state_topic, worker.snapshot_topic) == (state_topic(sdk), snapshot_topic(sdk))
    if not overrides:
        assert (worker.state_topic, worker.snapshot_topic) == ("rev.state", "rev.snapshots")
    if "REVOCAST_SNAPSHOT_TOPIC" in overrides:
        assert worker.snapshot_topic == overrides["REVOCAST_SNAPSHOT_TOPIC"]


def test_topics_given_to_the_constructor_are_kept_and_empty_means_the_default() -> None:
    kafka = KafkaSettings(topic="rev")
    given = StreamsSettings(allow_unsigned=True, kafka=kafka, state_topic="s", snapshot_topic="n")
    assert (given.state_topic, given.snapshot_topic) == ("s", "n")
    default = StreamsSettings(allow_unsigned=True, kafka=kafka)
    assert (default.state_topic, default.snapshot_topic) == ("rev.state", "rev.snapshots")


@pytest.mark.parametrize(
    ("overrides", "refusal"),
    [
        ({"REVOCAST_STATE_TOPIC": "rev"}, r"state_topic \(REVOCAST_STATE_TOPIC\) is the log topic"),
        (
            {"REVOCAST_SNAPSHOT_TOPIC": "rev"},
            r"snapshot_topic \(REVOCAST_SNAPSHOT_TOPIC\) is the log topic",
        ),
        (
            {"REVOCAST_STATE_TOPIC": "both", "REVOCAST_SNAPSHOT_TOPIC": "both"},
            r"state_topic and snapshot_topic .* are both 'both'",
        ),
        # The default name of the other one.
        ({"REVOCAST_STATE_TOPIC": "rev.snapshots"}, "are both 'rev.snapshots'"),
        ({"REVOCAST_SNAPSHOT_TOPIC": "rev.state"}, "are both 'rev.state'"),
        # Topics the worker writes other records to.
        ({"REVOCAST_STATE_TOPIC": "rev.stats"}, "'rev.stats' is another topic of the worker"),
        ({"REVOCAST_SNAPSHOT_TOPIC": "app-ticks"}, "'app-ticks' is another topic of the worker"),
        (
            {"REVOCAST_STATE_TOPIC": "app-rules-changelog"},
            "'app-rules-changelog' is another topic of the worker",
        ),
    ],
)
def test_a_state_or_snapshot_topic_that_is_the_log_or_another_topic_is_refused(
    overrides: dict[str, str], refusal: str
) -> None:
    env = {
        "REVOCAST_TOPIC": "rev",
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_STREAMS_APP_ID": "app",
        **overrides,
    }
    with pytest.raises(SettingsError, match=refusal):
        StreamsSettings.from_env(environ=env)


def test_derived_topics_refuse_the_log_topic_and_one_topic_for_both() -> None:
    assert derived_topics("rev") == ("rev.state", "rev.snapshots")
    assert derived_topics("rev", state_topic="s", snapshot_topic=None) == ("s", "rev.snapshots")
    with pytest.raises(SettingsError, match="is the log topic 'rev'"):
        derived_topics("rev", state_topic="rev")
    with pytest.raises(SettingsError, match="are both 'x'"):
        derived_topics("rev", state_topic="x", snapshot_topic="x")
