"""Settings are frozen, and neither their repr/str nor a from_env error shows a secret
(Kafka passwords, signing and verification keys, JWT keys, bearer tokens): settings get
logged at start-up and errors land in crash reports."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from consumer_sdk import ConsumerSettings
from identity_service._settings import IdentitySettings
from producer import PublisherSettings
from receiver._settings import ReceiverSettings, TransmitterSettings
from revocation_events import KafkaSettings, SettingsError, SigningKey, VerificationKey
from streams._settings import StreamsSettings

SASL = "sasl-password-MARKER-1"
SSL = "ssl-password-MARKER-2"
HMAC = b"hmac-secret-MARKER-3-padding-32bytes"
JWT_SECRET = "jwt-secret-MARKER-4-padding-32bytes"
PUSH = "push-token-MARKER-5"
RECEIVER = "receiver-token-MARKER-6"
ADMIN = "admin-token-MARKER-7"
OPTION = "option-value-MARKER-8"
ED25519 = Ed25519PrivateKey.generate()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seed() -> bytes:
    return ED25519.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())


MARKERS = [
    SASL,
    SSL,
    HMAC.decode(),
    b64(HMAC),
    JWT_SECRET,
    PUSH,
    RECEIVER,
    ADMIN,
    OPTION,
    b64(seed()),
    seed().hex(),
]


def kafka() -> KafkaSettings:
    return KafkaSettings(
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="svc",
        sasl_password=SASL,
        ssl_password=SSL,
        extra={"sasl_oauth_token_provider": OPTION},
    )


SETTINGS: dict[str, Callable[[], object]] = {
    "KafkaSettings": kafka,
    "PublisherSettings hmac": lambda: PublisherSettings(
        issuer="idp",
        kafka=kafka(),
        signing_key=SigningKey.hmac("ev1", HMAC),
        producer_options={"compression_type": OPTION},
    ),
    "PublisherSettings ed25519": lambda: PublisherSettings(
        issuer="idp", kafka=kafka(), signing_key=SigningKey.ed25519("ev1", ED25519)
    ),
    "ConsumerSettings": lambda: ConsumerSettings(
        kafka=kafka(),
        algorithms=("HS256",),
        jwt_keys={"k1": JWT_SECRET},
        event_keys=(VerificationKey.hmac("ev1", HMAC),),
        snapshot_keys=(VerificationKey.hmac("snap", HMAC),),
    ),
    "StreamsSettings": lambda: StreamsSettings(
        kafka=kafka(),
        verification_keys=(VerificationKey.hmac("ev1", HMAC),),
        snapshot_signing_key=SigningKey.ed25519("snap", ED25519),
    ),
    "ReceiverSettings": lambda: ReceiverSettings(
        transmitter=TransmitterSettings(
            issuer="https://tx.example",
            audience=("rx",),
            push_tokens=(PUSH + "-long-enough",),
            receiver_token=RECEIVER,
        )
    ),
    "IdentitySettings": lambda: IdentitySettings(admin_token=ADMIN),
}


@pytest.mark.parametrize("build", SETTINGS.values(), ids=SETTINGS.keys())
def test_settings_repr_and_str_show_no_secret(build: Callable[[], object]) -> None:
    settings = build()
    for text in (repr(settings), str(settings)):
        assert [m for m in MARKERS if m in text] == []
    assert type(settings).__name__ in repr(settings)  # the repr was not blanked altogether


@pytest.mark.parametrize("build", SETTINGS.values(), ids=SETTINGS.keys())
def test_settings_are_frozen_dataclasses(build: Callable[[], object]) -> None:
    settings = build()
    first = dataclasses.fields(settings)[0].name  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(settings, first, None)


# (settings class, prefix, a valid environment, a variable holding a secret, a bad value
# that still contains the secret)
BAD_SECRETS: dict[str, tuple[Any, str, dict[str, str], str, str]] = {
    "short hmac signing key": (
        PublisherSettings,
        "REVOCAST_",
        {"REVOCAST_EVENT_ISSUER": "idp"},
        "REVOCAST_SIGNING_KEY",
        f"ev1:hmac:{b64(HMAC[:8])}",
    ),
    "signing key of an unknown kind": (
        PublisherSettings,
        "REVOCAST_",
        {"REVOCAST_EVENT_ISSUER": "idp"},
        "REVOCAST_SIGNING_KEY",
        f"ev1:rsa:{b64(HMAC)}",
    ),
    "signing key with bad base64": (
        PublisherSettings,
        "REVOCAST_",
        {"REVOCAST_EVENT_ISSUER": "idp"},
        "REVOCAST_SIGNING_KEY",
        f"ev1:hmac:{b64(HMAC)}!!",
    ),
    "short hmac event key": (
        StreamsSettings,
        "REVOCAST_",
        {},
        "REVOCAST_EVENT_KEYS",
        f"ev1:hmac:{b64(HMAC[:8])}",
    ),
    "jwt keys not json": (
        ConsumerSettings,
        "REVOCAST_",
        {"REVOCAST_ALGORITHMS": "HS256", "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true"},
        "REVOCAST_JWT_KEYS",
        f'{{"k1": "{JWT_SECRET}"',
    ),
    "kafka options with an unknown option": (
        KafkaSettings,
        "REVOCAST_",
        {},
        "REVOCAST_KAFKA_OPTIONS",
        f'{{"sasl_plain_pasword": "{OPTION}"}}',
    ),
    "short push token": (
        ReceiverSettings,
        "REVOCAST_RECEIVER_",
        {"REVOCAST_RECEIVER_ISSUER": "https://tx.example", "REVOCAST_RECEIVER_AUDIENCE": "rx"},
        "REVOCAST_RECEIVER_PUSH_TOKENS",
        f"{PUSH[:6]},{PUSH}",
    ),
    "short admin token": (
        IdentitySettings,
        "REVOCAST_IDP_",
        {},
        "REVOCAST_IDP_ADMIN_TOKEN",
        ADMIN[:10],
    ),
}


@pytest.mark.parametrize(
    ("cls", "prefix", "env", "variable", "value"), BAD_SECRETS.values(), ids=BAD_SECRETS.keys()
)
def test_a_bad_secret_in_the_environment_is_named_but_not_shown(
    cls: Any, prefix: str, env: dict[str, str], variable: str, value: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        cls.from_env(prefix, {**env, variable: value})
    message = str(refused.value)
    assert variable.removeprefix(prefix).lower() in message.lower()
    secrets = [m for m in [*MARKERS, value, value.split(":")[-1], ADMIN[:10], PUSH[:6]] if m]
    assert [s for s in secrets if s in message] == []
