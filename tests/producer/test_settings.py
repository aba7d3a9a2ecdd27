from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from producer import PublisherSettings
from revocation_events import KafkaSettings, SettingsError, public_key_spec
from tests.producer._support import new_signing_key

KEY = new_signing_key("k1")
SPEC = "k1:hmac:" + "A" * 43  # 32 zero bytes, base64url


def env(**overrides: str) -> dict[str, str]:
    values = {"REVOCAST_EVENT_ISSUER": "identity", "REVOCAST_SIGNING_KEY": SPEC}
    values.update(overrides)
    return {k: v for k, v in values.items() if v != "<unset>"}


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    settings = PublisherSettings.from_env(
        environ=env(
            KAFKA_BOOTSTRAP_SERVERS="b1:9092,b2:9092",
            REVOCAST_TOPIC="revs",
            REVOCAST_MAX_TOKEN_LIFETIME="900",
            REVOCAST_DELIVERY="direct",
            REVOCAST_OUTBOX_PATH=str(tmp_path / "o.db"),
            REVOCAST_ACK_TIMEOUT="1.5",
            REVOCAST_DELIVERY_TIMEOUT="20",
            REVOCAST_MAX_BLOCK="3",
            REVOCAST_OUTBOX_LEASE="12.5",
            REVOCAST_PRODUCER_OPTIONS='{"linger_ms": 5}',
        )
    )
    assert settings.issuer == "identity"
    assert settings.signing_key is not None
    assert settings.signing_key.kid == "k1"
    assert settings.kafka.bootstrap_servers == ("b1:9092", "b2:9092")
    assert settings.kafka.topic == "revs"
    assert settings.max_token_lifetime == 900
    assert settings.delivery == "direct"
    assert settings.outbox_path == tmp_path / "o.db"
    assert (settings.ack_timeout, settings.delivery_timeout, settings.max_block) == (1.5, 20, 3)
    assert settings.outbox_lease == 12.5
    assert settings.producer_options == {"linger_ms": 5}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"REVOCAST_EVENT_ISSUER": "<unset>"}, "REVOCAST_EVENT_ISSUER"),
        ({"REVOCAST_SIGNING_KEY": "<unset>"}, "REVOCAST_SIGNING_KEY"),
        ({"REVOCAST_SIGNING_KEY": "k1:rsa:AAAA"}, "REVOCAST_SIGNING_KEY"),
        ({"REVOCAST_DELIVERY": "carrier-pigeon"}, "REVOCAST_DELIVERY"),
        ({"REVOCAST_MAX_TOKEN_LIFETIME": "0"}, "REVOCAST_MAX_TOKEN_LIFETIME"),
        ({"REVOCAST_ACK_TIMEOUT": "soon"}, "REVOCAST_ACK_TIMEOUT"),
        ({"REVOCAST_DELIVERY_TIMEOUT": "-1"}, "REVOCAST_DELIVERY_TIMEOUT"),
        ({"REVOCAST_OUTBOX_LEASE": "0"}, "REVOCAST_OUTBOX_LEASE"),
        ({"REVOCAST_OUTBOX_LEASE": "inf"}, "REVOCAST_OUTBOX_LEASE"),
        ({"REVOCAST_OUTBOX_LEASE": "0.5"}, "REVOCAST_OUTBOX_LEASE"),
        ({"REVOCAST_ALLOW_UNSIGNED": "maybe"}, "REVOCAST_ALLOW_UNSIGNED"),
        ({"REVOCAST_PRODUCER_OPTIONS": "{"}, "REVOCAST_PRODUCER_OPTIONS"),
        ({"REVOCAST_PRODUCER_OPTIONS": '{"acks": 1}'}, "REVOCAST_PRODUCER_OPTIONS"),
    ],
)
def test_from_env_names_the_bad_variable(variables: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        PublisherSettings.from_env(environ=env(**variables))


def test_bad_signing_key_error_does_not_echo_the_secret() -> None:
    secret = "k1:hmac:c2hvcnQtc2VjcmV0LXZhbHVl"  # too short: refused
    with pytest.raises(SettingsError) as info:
        PublisherSettings.from_env(environ=env(REVOCAST_SIGNING_KEY=secret))
    assert "c2hvcnQtc2VjcmV0LXZhbHVl" not in str(info.value)


def test_unsigned_publishing_needs_explicit_consent() -> None:
    with pytest.raises(SettingsError, match="signing key"):
        PublisherSettings(issuer="i")
    assert PublisherSettings(issuer="i", allow_unsigned=True).signing_key is None
    unsigned = PublisherSettings.from_env(
        environ=env(REVOCAST_SIGNING_KEY="<unset>", REVOCAST_ALLOW_UNSIGNED="true")
    )
    assert unsigned.signing_key is None


def test_repr_never_shows_the_signing_key() -> None:
    settings = PublisherSettings(issuer="i", signing_key=KEY)
    assert public_key_spec(KEY).split(":")[2] not in repr(settings)
    assert "signing_key" not in repr(settings)


@pytest.mark.parametrize(
    "options",
    [
        {"acks": 1},
        {"acks": 0},
        {"enable_idempotence": False},
        {"value_serializer": str.encode},
        {"transactional_id": "x"},
    ],
)
def test_producer_options_that_weaken_delivery_are_refused(options: dict[str, Any]) -> None:
    with pytest.raises(SettingsError, match="producer_options"):
        PublisherSettings(issuer="i", signing_key=KEY, producer_options=options)


@pytest.mark.parametrize(
    "field", ["max_token_lifetime", "ack_timeout", "delivery_timeout", "max_block", "outbox_lease"]
)
def test_durations_must_be_positive(field: str) -> None:
    kwargs: dict[str, Any] = {field: 0}
    with pytest.raises(SettingsError, match=field):
        PublisherSettings(issuer="i", signing_key=KEY, **kwargs)


def test_an_outbox_lease_shorter_than_its_renewals_is_refused() -> None:
    # Under a second, the lease could expire between two renewals of a live holder and a
    # second process would send the same rows.
    with pytest.raises(SettingsError, match="outbox_lease must be at least 1"):
        PublisherSettings(issuer="i", signing_key=KEY, outbox_lease=0.5)
    assert PublisherSettings(issuer="i", signing_key=KEY, outbox_lease=1).outbox_lease == 1


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REVOCAST_MAX_TOKEN_LIFETIME", "inf"),
        ("REVOCAST_MAX_TOKEN_LIFETIME", "1e15"),  # now + lifetime overflows datetime
        ("REVOCAST_ACK_TIMEOUT", "inf"),
        ("REVOCAST_DELIVERY_TIMEOUT", "inf"),
        ("REVOCAST_MAX_BLOCK", "inf"),
    ],
)
def test_an_unusable_huge_duration_is_refused_naming_the_variable(
    variable: str, value: str
) -> None:
    # Accepted, these made every publish (or the Publisher constructor) raise OverflowError.
    with pytest.raises(SettingsError, match=variable):
        PublisherSettings.from_env(environ=env(**{variable: value}))


@pytest.mark.parametrize("options", ['{"acks": [1]}', '{"enable_idempotence": {}}', "[" * 100_000])
def test_producer_options_json_of_any_shape_is_a_settings_error(options: str) -> None:
    # An unhashable value raised TypeError in the acks check; deep nesting RecursionError.
    with pytest.raises(SettingsError, match="REVOCAST_PRODUCER_OPTIONS"):
        PublisherSettings.from_env(environ=env(REVOCAST_PRODUCER_OPTIONS=options))


def test_a_misspelt_producer_option_is_refused_naming_the_variable() -> None:
    # Accepted, it made kafka-python's producer refuse to start: in outbox mode the drainer
    # then only logged the error, forever, and no revocation was delivered.
    with pytest.raises(SettingsError, match=r"REVOCAST_PRODUCER_OPTIONS.*lingr_ms"):
        PublisherSettings.from_env(environ=env(REVOCAST_PRODUCER_OPTIONS='{"lingr_ms": 5}'))


@pytest.mark.parametrize("options", [{"linger_ms": "soon"}, {"request_timeout_ms": -1}])
def test_a_timing_option_the_publisher_computes_with_must_be_whole_ms(
    options: dict[str, Any],
) -> None:
    # Accepted, "soon" made the Publisher constructor raise a bare TypeError.
    with pytest.raises(SettingsError, match="whole number of ms"):
        PublisherSettings(issuer="i", signing_key=KEY, producer_options=options)


def test_settings_are_frozen() -> None:
    settings = PublisherSettings(issuer="i", signing_key=KEY)
    with pytest.raises(AttributeError):
        settings.issuer = "other"  # type: ignore[misc]


def test_producer_options_cannot_be_weakened_after_validation() -> None:
    # A plain dict let acks=0 in after the acks=all check had passed.
    settings = PublisherSettings(issuer="i", signing_key=KEY, producer_options={"linger_ms": 5})
    with pytest.raises(TypeError):
        settings.producer_options["acks"] = 0  # type: ignore[index]


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"retries": 0}, "retries"),
        ({"max_in_flight_requests_per_connection": 6}, "max_in_flight_requests_per_connection"),
        ({"max_in_flight_requests_per_connection": "5"}, "max_in_flight_requests_per_connection"),
        ({"allow_auto_create_topics": True}, "allow_auto_create_topics"),
        ({"kafka_client": None}, "kafka_client"),
    ],
)
def test_producer_options_kafka_python_would_refuse_at_the_first_send_are_refused_up_front(
    options: dict[str, Any], named: str
) -> None:
    # Accepted, retries=0 or more than 5 requests in flight made kafka-python's idempotent
    # producer refuse to start: in outbox mode every publish returned queued=True and the
    # drainer only logged the error, forever. allow_auto_create_topics=true let a misspelt
    # topic be created with the broker's default retention.
    with pytest.raises(SettingsError, match=f"producer_options: {named}"):
        PublisherSettings(issuer="i", signing_key=KEY, producer_options=options)


def test_idempotence_limits_that_do_hold_are_accepted() -> None:
    options = {"retries": 10, "max_in_flight_requests_per_connection": 1}
    settings = PublisherSettings(issuer="i", signing_key=KEY, producer_options=options)
    assert settings.producer_options == options


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ('{"retries": 0}', "retries"),
        ('{"max_in_flight_requests_per_connection": 10}', "max_in_flight"),
        ('{"transactional_id": "t"}', "transactional_id"),
        ('{"request_timeout_ms": "soon"}', "request_timeout_ms"),
    ],
)
def test_shared_kafka_options_that_reach_the_producer_are_checked_naming_the_variable(
    options: str, named: str
) -> None:
    # REVOCAST_KAFKA_OPTIONS reaches the producer too (only acks, idempotence, the timeouts
    # and auto-creation are set over it): these made it refuse to start, or turned it into a
    # transactional producer whose sends all fail.
    with pytest.raises(SettingsError, match=f"REVOCAST_KAFKA_OPTIONS: {named}"):
        PublisherSettings.from_env(environ=env(REVOCAST_KAFKA_OPTIONS=options))


def test_shared_kafka_options_the_publisher_sets_itself_or_other_clients_use_are_accepted() -> None:
    options = '{"acks": 1, "allow_auto_create_topics": true, "isolation_level": "read_committed"}'
    settings = PublisherSettings.from_env(environ=env(REVOCAST_KAFKA_OPTIONS=options))
    assert settings.kafka.extra["acks"] == 1  # producer_config sets acks=all over it


@pytest.mark.parametrize("topic", ["revocations v2", "team/revocations", "é", ".", ".."])
def test_a_topic_name_kafka_refuses_is_refused_naming_the_setting(topic: str) -> None:
    # Accepted, kafka-python raised a bare ValueError at every send: direct publishes failed
    # with it and the outbox drainer logged it forever, delivering nothing.
    with pytest.raises(SettingsError, match=r"topic must be a Kafka topic name"):
        KafkaSettings(topic=topic)  # checked there, for the SDK, the worker and the CLI too
    with pytest.raises(SettingsError, match="REVOCAST_TOPIC"):
        PublisherSettings.from_env(environ=env(REVOCAST_TOPIC=topic))


def test_every_legal_topic_name_character_is_accepted() -> None:
    kafka = KafkaSettings(topic="Team_1.revocations-v2")
    assert PublisherSettings(issuer="i", signing_key=KEY, kafka=kafka).kafka.topic == kafka.topic
