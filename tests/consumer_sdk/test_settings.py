"""ConsumerSettings: validation and from_env, which names the bad variable and value."""

from __future__ import annotations

import json

import pytest

from consumer_sdk import ConsumerSettings, FailurePolicy
from revocation_events import KafkaSettings, SettingsError, public_key_spec
from tests.consumer_sdk._helpers import EVENT_KEY

BASE = {
    "REVOCAST_ALGORITHMS": "HS256",
    "REVOCAST_JWT_KEY": "a-long-enough-hmac-secret-0123456789",
    "REVOCAST_EVENT_KEYS": public_key_spec(EVENT_KEY),
}


def test_from_env_reads_every_field() -> None:
    env = {
        **BASE,
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9092,b2:9092",
        "REVOCAST_TOPIC": "revs",
        "REVOCAST_ISSUER": "https://idp",
        "REVOCAST_AUDIENCE": "api, web",
        "REVOCAST_LEEWAY": "30",
        "REVOCAST_MAX_STALENESS": "5",
        "REVOCAST_FAILURE_POLICY": "accept",
        "REVOCAST_REQUIRE_SUB": "true",
        "REVOCAST_MAX_TOKEN_BYTES": "4096",
        "REVOCAST_JWT_KID": "main",
    }
    s = ConsumerSettings.from_env(environ=env)
    assert s.kafka.bootstrap_servers == ("b1:9092", "b2:9092")
    assert s.kafka.topic == "revs"
    assert s.audience == ("api", "web")
    assert (s.leeway, s.max_staleness, s.max_token_bytes) == (30.0, 5.0, 4096)
    assert s.failure_policy is FailurePolicy.ACCEPT
    assert s.require_sub
    assert list(s.jwt_keys) == ["main"]
    assert [k.kid for k in s.event_keys] == ["ev1"]


def test_from_env_names_the_bad_variable_and_value() -> None:
    with pytest.raises(SettingsError, match=r"REVOCAST_MAX_STALENESS must be a number, got 'soon'"):
        ConsumerSettings.from_env(environ={**BASE, "REVOCAST_MAX_STALENESS": "soon"})
    with pytest.raises(SettingsError, match=r"REVOCAST_FAILURE_POLICY .* got 'maybe'"):
        ConsumerSettings.from_env(environ={**BASE, "REVOCAST_FAILURE_POLICY": "maybe"})


def test_from_env_never_echoes_key_material() -> None:
    bad = "k1:hmac:!!!not-base64-secret!!!"
    with pytest.raises(SettingsError, match="REVOCAST_EVENT_KEYS") as info:
        ConsumerSettings.from_env(environ={**BASE, "REVOCAST_EVENT_KEYS": bad})
    assert "not-base64-secret" not in str(info.value)
    with pytest.raises(SettingsError, match="REVOCAST_JWT_KEYS") as info2:
        ConsumerSettings.from_env(
            environ={**BASE, "REVOCAST_JWT_KEY": "", "REVOCAST_JWT_KEYS": "{sec"}
        )
    assert "{sec" not in str(info2.value)


def test_jwt_keys_json_maps_kids_to_keys() -> None:
    keys = {"a": "x" * 32, "b": "y" * 32}
    env = {**BASE, "REVOCAST_JWT_KEY": "", "REVOCAST_JWT_KEYS": json.dumps(keys)}
    assert dict(ConsumerSettings.from_env(environ=env).jwt_keys) == keys


def test_missing_algorithms_is_an_error_saying_what_to_set() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_ALGORITHMS is required"):
        ConsumerSettings.from_env(environ={k: v for k, v in BASE.items() if "ALG" not in k})


def test_no_event_keys_without_allow_unsigned_explains_the_fix() -> None:
    env = {k: v for k, v in BASE.items() if "EVENT_KEYS" not in k}
    fix = r"REVOCAST_EVENT_KEYS=.*REVOCAST_ALLOW_UNSIGNED_EVENTS"
    with pytest.raises(SettingsError, match=fix):
        ConsumerSettings.from_env(environ=env)
    s = ConsumerSettings.from_env(environ={**env, "REVOCAST_ALLOW_UNSIGNED_EVENTS": "yes"})
    assert s.allow_unsigned_events


def test_settings_are_frozen_and_keyword_only() -> None:
    s = ConsumerSettings.from_env(environ=BASE)
    with pytest.raises(AttributeError):
        s.leeway = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        ConsumerSettings(("HS256",))  # type: ignore[call-arg, arg-type]


def test_secrets_are_not_in_the_repr() -> None:
    assert "a-long-enough" not in repr(ConsumerSettings.from_env(environ=BASE))


def test_verify_cache_size_is_off_by_default_and_read_from_the_environment() -> None:
    assert ConsumerSettings.from_env(environ=BASE).verify_cache_size == 0
    env = {**BASE, "REVOCAST_VERIFY_CACHE_SIZE": "10000"}
    assert ConsumerSettings.from_env(environ=env).verify_cache_size == 10_000


@pytest.mark.parametrize("bad", ["lots", "1.5", "-1"])
def test_bad_verify_cache_size_names_the_variable(bad: str) -> None:
    with pytest.raises(SettingsError, match=rf"REVOCAST_VERIFY_CACHE_SIZE .*{bad}"):
        ConsumerSettings.from_env(environ={**BASE, "REVOCAST_VERIFY_CACHE_SIZE": bad})


SECONDS = [
    "JWKS_REFRESH_INTERVAL",
    "JWKS_MIN_REFRESH_INTERVAL",
    "LEEWAY",
    "MAX_TOKEN_LIFETIME",
    "MAX_STALENESS",
    "PARTITION_CHECK_INTERVAL",
    "EXPIRE_INTERVAL",
    "HEARTBEAT_INTERVAL",
]


@pytest.mark.parametrize("value", ["nan", "inf", "1e400", "-nan"])
@pytest.mark.parametrize("variable", SECONDS)
def test_non_finite_seconds_from_env_are_a_settings_error(variable: str, value: str) -> None:
    # float() parses these; NaN passes every "< 0" check, inf disables a bound (an
    # interrupted stream trusted forever with MAX_STALENESS=inf).
    with pytest.raises(SettingsError, match=rf"{variable.lower()} must be a finite number"):
        ConsumerSettings.from_env(environ={**BASE, f"REVOCAST_{variable}": value})


@pytest.mark.parametrize("variable", SECONDS)
def test_huge_seconds_from_env_are_a_settings_error(variable: str) -> None:
    """Finite but huge: jwks_min_refresh_interval=1e30 overflowed in the JWKS thread's wait
    and killed it (key rotation stopped)."""
    with pytest.raises(SettingsError, match=rf"{variable.lower()} must be at most"):
        ConsumerSettings.from_env(environ={**BASE, f"REVOCAST_{variable}": "1e30"})


def test_deeply_nested_jwt_keys_are_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="JWT_KEYS is not valid JSON"):
        ConsumerSettings.from_env(
            environ={**BASE, "REVOCAST_JWT_KEY": "", "REVOCAST_JWT_KEYS": "[" * 100_000}
        )


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"state_topic": "revs"}, "REVOCAST_STATE_TOPIC"),
        ({"snapshot_topic": "revs"}, "REVOCAST_SNAPSHOT_TOPIC"),
        ({"state_topic": "revs.snapshots"}, "are both"),
        ({"state_topic": "s", "snapshot_topic": "s"}, "are both"),
        ({"heartbeat_topic": "revs"}, "REVOCAST_HEARTBEAT_TOPIC"),
        ({"heartbeat_topic": "revs.state"}, "REVOCAST_HEARTBEAT_TOPIC"),
        ({"heartbeat_topic": "snaps", "snapshot_topic": "snaps"}, "REVOCAST_HEARTBEAT_TOPIC"),
        # Names Kafka refuses: the source or the heartbeat thread would fail at every retry.
        ({"state_topic": "revs state"}, "REVOCAST_STATE_TOPIC.*Kafka topic name"),
        ({"snapshot_topic": "revs/snaps"}, "REVOCAST_SNAPSHOT_TOPIC.*Kafka topic name"),
        ({"heartbeat_topic": "beats!"}, "REVOCAST_HEARTBEAT_TOPIC.*Kafka topic name"),
    ],
)
def test_a_derived_topic_that_is_the_log_or_another_derived_one_is_refused(
    overrides: dict[str, str], named: str
) -> None:
    # Markers and snapshot chunks among the records they describe: the worker and the
    # operator commands refuse these names, and so must the SDK that reads them.
    with pytest.raises(SettingsError, match=named):
        ConsumerSettings(
            algorithms=("HS256",),
            jwt_keys={"k": "x" * 32},
            allow_unsigned_events=True,
            kafka=KafkaSettings(topic="revs"),
            **overrides,  # type: ignore[arg-type]
        )


def test_the_state_and_snapshot_topics_default_to_names_derived_from_the_log() -> None:
    from consumer_sdk._snapshot_reader import snapshot_topic
    from consumer_sdk._state_topic import state_topic

    plain = ConsumerSettings(
        algorithms=("HS256",),
        jwt_keys={"k": "x" * 32},
        allow_unsigned_events=True,
        kafka=KafkaSettings(topic="revs"),
    )
    assert (state_topic(plain), snapshot_topic(plain)) == ("revs.state", "revs.snapshots")


def test_a_log_name_whose_derived_snapshot_topic_is_too_long_for_kafka_is_refused() -> None:
    log = "r" * 240  # legal; "<log>.snapshots" is 250 characters, one too many
    with pytest.raises(SettingsError, match=r"REVOCAST_SNAPSHOT_TOPIC.*Kafka topic name"):
        ConsumerSettings(
            algorithms=("HS256",),
            jwt_keys={"k": "x" * 32},
            allow_unsigned_events=True,
            kafka=KafkaSettings(topic=log),
        )
