"""Kafka connection settings shared by every Revocast client (producer, SDK, ops CLI).

Production is a cluster with TLS and SASL: every kafka-python client option can be passed,
either through the named fields or ``extra`` (``REVOCAST_KAFKA_OPTIONS`` as a JSON object).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from revocation_events._errors import RevocastError
from revocation_events._signing import (
    KeySpecError,
    SigningKey,
    VerificationKey,
    parse_signing_key,
    parse_verification_keys,
)
from revocation_events._wire import DEFAULT_TOPIC

__all__ = [
    "KafkaSettings",
    "SettingsError",
    "check_topic_name",
    "env_bool",
    "env_float",
    "env_int",
    "env_signing_key",
    "env_str",
    "env_verification_keys",
]

_PROTOCOLS = frozenset({"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"})
_SASL = frozenset({"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI"})


class SettingsError(RevocastError, ValueError):
    """A setting has a bad value. The message names the setting (and never prints secrets)."""


@dataclass(frozen=True, kw_only=True)
class KafkaSettings:
    """How to reach the cluster and which topic carries revocations."""

    bootstrap_servers: tuple[str, ...] = ("127.0.0.1:9092",)
    topic: str = DEFAULT_TOPIC
    client_id: str = "revocast"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_password: str | None = field(default=None, repr=False)
    request_timeout_ms: int = 30_000
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Any other kafka-python option, passed through unchanged (it wins over the fields)."""

    def __post_init__(self) -> None:
        if not self.bootstrap_servers or any(":" not in s for s in self.bootstrap_servers):
            raise SettingsError(
                f"bootstrap_servers must be host:port items, got {list(self.bootstrap_servers)!r}"
            )
        check_topic_name("topic", self.topic)
        if self.security_protocol not in _PROTOCOLS:
            raise SettingsError(
                f"security_protocol must be one of {sorted(_PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        if self.sasl_mechanism is not None and self.sasl_mechanism not in _SASL:
            raise SettingsError(
                f"sasl_mechanism must be one of {sorted(_SASL)}, got {self.sasl_mechanism!r}"
            )
        if self.security_protocol.startswith("SASL") and self.sasl_mechanism is None:
            raise SettingsError(f"sasl_mechanism is required with {self.security_protocol}")
        if (
            self.sasl_mechanism == "OAUTHBEARER"
            and self.extra.get("sasl_oauth_token_provider") is None
        ):
            # A provider is a Python object: it cannot come from the environment's JSON.
            raise SettingsError(
                "sasl_mechanism OAUTHBEARER needs extra['sasl_oauth_token_provider'] "
                "(an object, so set it in code, not in REVOCAST_KAFKA_OPTIONS)"
            )
        if self.request_timeout_ms <= 0:
            raise SettingsError(f"request_timeout_ms must be > 0, got {self.request_timeout_ms}")
        _check_options("extra", self.extra)
        # Read-only, as the rest of the frozen settings: a mutation after validation would
        # skip the checks (a misspelt option, a value a client refuses).
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> KafkaSettings:
        """Read ``KAFKA_BOOTSTRAP_SERVERS`` (or ``{prefix}KAFKA_BOOTSTRAP_SERVERS``),
        ``{prefix}TOPIC`` and ``{prefix}KAFKA_*`` (``SECURITY_PROTOCOL``, ``SASL_MECHANISM``,
        ``SASL_USERNAME``, ``SASL_PASSWORD``, ``SSL_CAFILE``, ``SSL_CERTFILE``, ``SSL_KEYFILE``,
        ``SSL_PASSWORD``, ``CLIENT_ID``, ``REQUEST_TIMEOUT_MS``, ``OPTIONS`` as JSON)."""
        env = os.environ if environ is None else environ
        k = f"{prefix}KAFKA_"
        servers = env.get(f"{k}BOOTSTRAP_SERVERS") or env.get("KAFKA_BOOTSTRAP_SERVERS")
        kwargs: dict[str, Any] = {}
        if servers is not None:
            kwargs["bootstrap_servers"] = tuple(s.strip() for s in servers.split(",") if s.strip())
        for name in (
            "client_id",
            "security_protocol",
            "sasl_mechanism",
            "sasl_username",
            "sasl_password",
            "ssl_cafile",
            "ssl_certfile",
            "ssl_keyfile",
            "ssl_password",
        ):
            value = env_str(env, f"{k}{name.upper()}")
            if value is not None:
                kwargs[name] = value
        topic = env_str(env, f"{prefix}TOPIC")
        if topic is not None:
            check_topic_name(f"{prefix}TOPIC", topic)
            kwargs["topic"] = topic
        timeout = env_int(env, f"{k}REQUEST_TIMEOUT_MS")
        if timeout is not None:
            kwargs["request_timeout_ms"] = timeout
        options = env.get(f"{k}OPTIONS")
        if options:
            try:
                parsed = json.loads(options)
            except (ValueError, RecursionError):  # deeply nested JSON: RecursionError
                raise SettingsError(f"{k}OPTIONS is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise SettingsError(f"{k}OPTIONS must be a JSON object")
            _check_options(f"{k}OPTIONS", parsed)
            kwargs["extra"] = parsed
        try:
            return cls(**kwargs)
        except SettingsError as exc:
            raise SettingsError(f"{exc} (from environment, prefix {prefix!r})") from None

    def client_config(self, accepted: Collection[str] | None = None) -> dict[str, Any]:
        """Keyword arguments common to kafka-python's producer, consumer and admin client.

        ``extra`` is shared by every kind of client, and each refuses options it does not
        know: pass ``accepted`` (the client class's ``DEFAULT_CONFIG``) to keep only its own.
        """
        config: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
            "request_timeout_ms": self.request_timeout_ms,
        }
        optional = {
            "sasl_mechanism": self.sasl_mechanism,
            "sasl_plain_username": self.sasl_username,
            "sasl_plain_password": self.sasl_password,
            "ssl_cafile": self.ssl_cafile,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_password": self.ssl_password,
        }
        config.update({k: v for k, v in optional.items() if v is not None})
        config.update({k: v for k, v in self.extra.items() if accepted is None or k in accepted})
        return config


_TOPIC_NAME = re.compile(r"[a-zA-Z0-9._-]{1,249}")


def check_topic_name(label: str, topic: object) -> None:
    """Raise :class:`SettingsError` naming ``label`` unless ``topic`` is a name Kafka allows:
    kafka-python refuses any other only at the first send or fetch, with a ``ValueError``
    that a background thread would log forever."""
    if not isinstance(topic, str) or not _TOPIC_NAME.fullmatch(topic) or topic in {".", ".."}:
        raise SettingsError(
            f"{label} must be a Kafka topic name (1-249 ASCII letters, digits, '.', '_', '-'), "
            f"got {topic!r}"
        )


def _check_options(label: str, options: Mapping[str, Any]) -> None:
    unknown = sorted(str(k) for k in options if k not in _KNOWN_OPTIONS)
    if unknown:
        raise SettingsError(f"{label}: not kafka-python client options: {', '.join(unknown)}")
    for name, value in options.items():
        expected = _SCALAR_OPTIONS.get(name)
        if expected is not None and not _is_a(value, expected):
            # Else a TypeError from deep inside kafka-python when a client starts, or a
            # background thread failing on every reconnect.
            raise SettingsError(
                f"{label}: {name} must be {' or '.join(t.__name__ for t in expected)}, "
                f"got {type(value).__name__}"
            )


def _is_a(value: object, expected: tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # an int to isinstance(), never a number here
        return bool in expected
    return isinstance(value, expected)


_CLIENTS = (KafkaProducer, KafkaConsumer, KafkaAdminClient)
# What at least one kind of client accepts: anything else is a typo.
_KNOWN_OPTIONS = frozenset({name for client in _CLIENTS for name in client.DEFAULT_CONFIG})


def _scalar_options() -> dict[str, tuple[type, ...]]:
    """Options whose every client's default is a number or a bool: the types they accept (a
    float option takes an int too). ``acks`` also takes ``"all"``: left to the producer."""
    kinds: dict[str, set[type]] = {}
    for client in _CLIENTS:
        for name, default in client.DEFAULT_CONFIG.items():
            kinds.setdefault(name, set()).add(type(default))
    scalar: dict[str, tuple[type, ...]] = {}
    for name, types in kinds.items():
        if name == "acks" or not types <= {int, float, bool}:
            continue
        if types == {bool}:
            scalar[name] = (bool,)
        elif bool not in types:
            scalar[name] = (int, float) if float in types else (int,)
    return scalar


_SCALAR_OPTIONS = _scalar_options()


def env_str(env: Mapping[str, str], name: str) -> str | None:
    """The stripped value of variable ``name``, or None when it is unset or blank."""
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def env_int(env: Mapping[str, str], name: str) -> int | None:
    """Variable ``name`` as an integer, or None when unset; a :class:`SettingsError` naming
    the variable otherwise."""
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {value!r}") from None


def env_float(env: Mapping[str, str], name: str) -> float | None:
    """Variable ``name`` as a float, or None when unset; a :class:`SettingsError` naming the
    variable otherwise. ``nan`` and ``inf`` parse: range-check the result."""
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {value!r}") from None


def env_bool(env: Mapping[str, str], name: str) -> bool | None:
    """Variable ``name`` as a flag (``1/true/yes/on``, ``0/false/no/off``, any case), or None
    when unset; a :class:`SettingsError` naming the variable otherwise."""
    value = env_str(env, name)
    if value is None:
        return None
    lowered = value.lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {value!r}")


def env_verification_keys(env: Mapping[str, str], name: str) -> tuple[VerificationKey, ...] | None:
    """Public keys from a comma list of key specs (``revocast keys generate`` prints them)."""
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return parse_verification_keys(value)
    except KeySpecError as exc:
        raise SettingsError(f"{name}: {exc}") from None


def env_signing_key(env: Mapping[str, str], name: str) -> SigningKey | None:
    """A private key spec; the error names the variable, never its (secret) value."""
    value = env_str(env, name)
    if value is None:
        return None
    try:
        return parse_signing_key(value)
    except KeySpecError as exc:  # its message never echoes key material
        raise SettingsError(f"{name} is invalid: {exc}") from None
