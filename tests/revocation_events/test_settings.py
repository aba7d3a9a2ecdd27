from __future__ import annotations

import json

import pytest

from revocation_events import DEFAULT_TOPIC, KafkaSettings, SettingsError


def test_defaults_point_at_a_local_broker_and_the_default_topic() -> None:
    settings = KafkaSettings.from_env(environ={})
    assert settings.bootstrap_servers == ("127.0.0.1:9092",)
    assert settings.topic == DEFAULT_TOPIC


def test_the_standard_bootstrap_variable_is_honoured_and_split() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "b1:9093, b2:9093,b3:9093"}
    assert KafkaSettings.from_env(environ=env).bootstrap_servers == (
        "b1:9093",
        "b2:9093",
        "b3:9093",
    )


def test_the_prefixed_bootstrap_variable_wins_over_the_standard_one() -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "a:1", "REVOCAST_KAFKA_BOOTSTRAP_SERVERS": "b:2"}
    assert KafkaSettings.from_env(environ=env).bootstrap_servers == ("b:2",)


def test_tls_and_sasl_settings_reach_the_client_config() -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "b1:9093",
        "REVOCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "REVOCAST_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "REVOCAST_KAFKA_SASL_USERNAME": "svc",
        "REVOCAST_KAFKA_SASL_PASSWORD": "hunter2",
        "REVOCAST_KAFKA_SSL_CAFILE": "/etc/ca.pem",
        "REVOCAST_KAFKA_OPTIONS": '{"metadata_max_age_ms": 5000}',
    }
    settings = KafkaSettings.from_env(environ=env)
    config = settings.client_config()
    assert config["security_protocol"] == "SASL_SSL"
    assert config["sasl_mechanism"] == "SCRAM-SHA-512"
    assert config["sasl_plain_username"] == "svc"
    assert config["sasl_plain_password"] == "hunter2"
    assert config["ssl_cafile"] == "/etc/ca.pem"
    assert config["metadata_max_age_ms"] == 5000
    assert "hunter2" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"REVOCAST_KAFKA_SECURITY_PROTOCOL": "TLS"}, "security_protocol"),
        ({"REVOCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "sasl_mechanism"),
        ({"REVOCAST_KAFKA_REQUEST_TIMEOUT_MS": "soon"}, "REVOCAST_KAFKA_REQUEST_TIMEOUT_MS"),
        ({"REVOCAST_KAFKA_REQUEST_TIMEOUT_MS": "0"}, "request_timeout_ms"),
        ({"REVOCAST_KAFKA_OPTIONS": "{nope"}, "REVOCAST_KAFKA_OPTIONS"),
        ({"REVOCAST_KAFKA_OPTIONS": "[1]"}, "REVOCAST_KAFKA_OPTIONS"),
        ({"REVOCAST_KAFKA_OPTIONS": '{"a":' * 10_000}, "REVOCAST_KAFKA_OPTIONS"),  # RecursionError
        ({"REVOCAST_KAFKA_OPTIONS": '{"lingr_ms": 5}'}, "REVOCAST_KAFKA_OPTIONS.*lingr_ms"),
        ({"KAFKA_BOOTSTRAP_SERVERS": "nohostport"}, "bootstrap_servers"),
    ],
)
def test_each_bad_value_gives_an_error_naming_the_setting(env: dict[str, str], names: str) -> None:
    with pytest.raises(SettingsError, match=names):
        KafkaSettings.from_env(environ=env)


def test_the_pass_through_options_cannot_be_changed_after_validation() -> None:
    settings = KafkaSettings(extra={"linger_ms": 5})
    with pytest.raises(TypeError):
        settings.extra["not_an_option"] = 1  # type: ignore[index]
    assert dict(settings.extra) == {"linger_ms": 5}


@pytest.mark.parametrize("topic", ["revocations v2", "team/revocations", "é", ".", "..", "a" * 250])
def test_a_topic_name_kafka_refuses_is_refused_naming_the_setting(topic: str) -> None:
    # Accepted, kafka-python refused it only at the first send or fetch, with a ValueError a
    # background thread (outbox drainer, SDK source, worker) logged at every retry.
    with pytest.raises(SettingsError, match="topic must be a Kafka topic name"):
        KafkaSettings(topic=topic)
    with pytest.raises(SettingsError, match="REVOCAST_TOPIC must be"):
        KafkaSettings.from_env(environ={"REVOCAST_TOPIC": topic})


def test_every_legal_topic_name_character_and_the_longest_name_are_accepted() -> None:
    assert KafkaSettings(topic="Team_1.revocations-v2").topic == "Team_1.revocations-v2"
    assert len(KafkaSettings(topic="t" * 249).topic) == 249


@pytest.mark.parametrize(
    "options",
    [
        '{"bootstrap_timeout_ms": "x"}',
        '{"linger_ms": 5.5}',
        '{"linger_ms": true}',
        '{"max_poll_records": null}',
        '{"check_crcs": 1}',
        '{"retries": "3"}',
    ],
)
def test_an_option_value_of_the_wrong_type_is_refused_naming_it(options: str) -> None:
    # Accepted, a TypeError came from deep inside kafka-python when a client started.
    name = next(iter(json.loads(options)))
    with pytest.raises(SettingsError, match=f"REVOCAST_KAFKA_OPTIONS: {name} must be"):
        KafkaSettings.from_env(environ={"REVOCAST_KAFKA_OPTIONS": options})
    with pytest.raises(SettingsError, match=f"extra: {name} must be"):
        KafkaSettings(extra=json.loads(options))


def test_option_values_of_the_types_kafka_python_takes_are_accepted() -> None:
    extra = {
        "retries": 5,  # a float option (default inf) takes an int
        "consumer_timeout_ms": 1.5,
        "check_crcs": False,
        "acks": "all",  # left to the producer's own check
        "api_version": [3, 9],  # not a scalar option: passed through
        "client_rack": "rack-1",
    }
    assert dict(KafkaSettings(extra=extra).extra) == extra


def test_oauthbearer_needs_a_token_provider_which_only_code_can_give() -> None:
    env = {
        "REVOCAST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "REVOCAST_KAFKA_SASL_MECHANISM": "OAUTHBEARER",
    }
    # Accepted, kafka-python failed at every connection attempt in the background thread.
    with pytest.raises(SettingsError, match="sasl_oauth_token_provider"):
        KafkaSettings.from_env(environ=env)
    provider = object()
    settings = KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="OAUTHBEARER",
        extra={"sasl_oauth_token_provider": provider},
    )
    assert settings.client_config()["sasl_oauth_token_provider"] is provider
