from __future__ import annotations

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
