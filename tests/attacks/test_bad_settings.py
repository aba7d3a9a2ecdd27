"""Every setting read from the environment, given a bad value, fails with a SettingsError that
names it (the variable, or the field it sets) — for the consumer SDK, the publisher and the
Kafka connection they share."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest

from consumer_sdk import ConsumerSettings
from producer import PublisherSettings
from revocation_events import KafkaSettings, SettingsError
from tests.faults._figures import record_figures

P = "REVOCAST_"
SECRET = "A" * 43  # 32 bytes, base64url
CONSUMER_OK = {
    f"{P}ALGORITHMS": "HS256",
    f"{P}JWT_KEY": "s" * 32,
    f"{P}EVENT_KEYS": f"ev1:hmac:{SECRET}",
}
PUBLISHER_OK = {f"{P}EVENT_ISSUER": "identity", f"{P}SIGNING_KEY": f"ev1:hmac:{SECRET}"}

# (variable, bad value, extra variables)
CONSUMER_BAD: list[tuple[str, str, dict[str, str]]] = [
    ("ALGORITHMS", "none", {}),
    ("ALGORITHMS", "XS999", {}),
    ("JWT_KEYS", "{not json", {f"{P}JWT_KEY": ""}),
    ("JWT_KEYS", '["a list"]', {f"{P}JWT_KEY": ""}),
    ("JWT_KEYS", '{"k1": "x"}', {}),  # together with JWT_KEY
    ("JWKS_URL", "https://idp.example/jwks", {}),  # together with JWT_KEY
    ("JWKS_REFRESH_INTERVAL", "soon", {}),
    ("JWKS_REFRESH_INTERVAL", "0", {}),
    ("JWKS_MIN_REFRESH_INTERVAL", "-1", {}),
    ("LEEWAY", "lots", {}),
    ("LEEWAY", "900", {}),
    ("MAX_TOKEN_LIFETIME", "0", {}),
    ("MAX_STALENESS", "-1", {}),
    ("MAX_TOKEN_BYTES", "10", {}),
    ("MAX_TOKEN_BYTES", "1.5k", {}),
    ("POLL_TIMEOUT_MS", "0", {}),
    ("PARTITION_CHECK_INTERVAL", "0", {}),
    ("EXPIRE_INTERVAL", "-5", {}),
    ("HEARTBEAT_INTERVAL", "often", {}),
    ("REQUIRE_SUB", "maybe", {}),
    ("ALLOW_UNSIGNED_EVENTS", "perhaps", {}),
    ("REPLAY_FROM_BEGINNING", "2", {}),
    ("FAILURE_POLICY", "sometimes", {}),
    ("EVENT_KEYS", "not-a-key", {}),
    ("EVENT_KEYS", "ev1:hmac:c2hvcnQ", {}),
    ("BOOTSTRAP", "sideways", {}),
]
PUBLISHER_BAD: list[tuple[str, str, dict[str, str]]] = [
    ("EVENT_ISSUER", " ", {}),
    ("SIGNING_KEY", "ev1:rot13:abc", {}),
    ("SIGNING_KEY", "", {}),
    ("ALLOW_UNSIGNED", "perhaps", {}),
    ("DELIVERY", "carrier-pigeon", {}),
    ("MAX_TOKEN_LIFETIME", "-5", {}),
    ("ACK_TIMEOUT", "0", {}),
    ("DELIVERY_TIMEOUT", "later", {}),
    ("MAX_BLOCK", "-1", {}),
    ("PRODUCER_OPTIONS", "{nope", {}),
    ("PRODUCER_OPTIONS", '{"acks": 1}', {}),
]
KAFKA_BAD: list[tuple[str, str, dict[str, str]]] = [
    ("KAFKA_BOOTSTRAP_SERVERS", "no-port-here", {}),
    ("TOPIC", "t" * 300, {}),
    ("KAFKA_SECURITY_PROTOCOL", "TLS", {}),
    ("KAFKA_SASL_MECHANISM", "MD5", {}),
    ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL", {}),  # needs a mechanism: names the one to set
    ("KAFKA_REQUEST_TIMEOUT_MS", "soon", {}),
    ("KAFKA_REQUEST_TIMEOUT_MS", "0", {}),
    ("KAFKA_OPTIONS", "{nope", {}),
    ("KAFKA_OPTIONS", "[1, 2]", {}),
]

Loader = Callable[[Mapping[str, str]], Any]
LOADERS: dict[str, tuple[Loader, dict[str, str]]] = {
    "consumer": (lambda env: ConsumerSettings.from_env(P, env), CONSUMER_OK),
    "publisher": (lambda env: PublisherSettings.from_env(P, env), PUBLISHER_OK),
}
CASES = (
    [
        pytest.param("consumer", var, value, extra, id=f"consumer-{var}={value[:20]}")
        for var, value, extra in CONSUMER_BAD
    ]
    + [
        pytest.param("publisher", var, value, extra, id=f"publisher-{var}={value[:20]}")
        for var, value, extra in PUBLISHER_BAD
    ]
    + [
        pytest.param(who, var, value, extra, id=f"{who}-{var}={value[:20]}")
        for var, value, extra in KAFKA_BAD
        for who in LOADERS
    ]
)
# Settings that are fine alone but need another one: the error names the one to set.
NAMES_INSTEAD = {("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"): "sasl_mechanism"}


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, int]]:
    counts = {"tried": 0, "named": 0}
    yield counts
    record_figures("bad_settings", values_tried=counts["tried"], named=counts["named"])


def names_it(message: str, variable: str, value: str) -> bool:
    field = NAMES_INSTEAD.get((variable, value), variable.removeprefix("KAFKA_").lower())
    return f"{P}{variable}" in message or field in message


@pytest.mark.parametrize(("who", "variable", "value", "extra"), CASES)
def test_bad_value_is_a_settings_error_naming_the_setting(
    who: str, variable: str, value: str, extra: dict[str, str], tally: dict[str, int]
) -> None:
    load, ok = LOADERS[who]
    env = {**ok, f"{P}{variable}": value, **extra}
    tally["tried"] += 1
    with pytest.raises(SettingsError) as refused:
        load(env)
    assert names_it(str(refused.value), variable, value), str(refused.value)
    tally["named"] += 1


@pytest.mark.parametrize("who", LOADERS)
def test_the_good_environment_loads(who: str) -> None:
    load, ok = LOADERS[who]
    assert load(ok) is not None


def test_kafka_settings_alone_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_KAFKA_REQUEST_TIMEOUT_MS"):
        KafkaSettings.from_env(P, {f"{P}KAFKA_REQUEST_TIMEOUT_MS": "soon"})
