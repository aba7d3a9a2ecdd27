"""Publisher settings: frozen, keyword-only, readable from the environment."""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

from kafka import KafkaProducer

from revocation_events import (
    KafkaSettings,
    SettingsError,
    SigningKey,
    env_bool,
    env_float,
    env_signing_key,
    env_str,
)

__all__ = ["DEFAULT_OUTBOX_PATH", "DeliveryMode", "PublisherSettings"]

DeliveryMode = Literal["outbox", "direct"]
_MAX_DURATION = 100 * 365 * 86_400.0
DEFAULT_OUTBOX_PATH = Path(".revocast") / "publisher-outbox.sqlite3"
_DURATIONS = ("max_token_lifetime", "ack_timeout", "delivery_timeout", "max_block", "outbox_lease")
_MIN_LEASE = 1.0
"""The drainer looks at the file every 50 ms and renews during a batch; a shorter lease would
expire between two renewals and let a second process send the same rows."""

# Options that would silently weaken delivery: acks=1 turns idempotence off in kafka-python 3.
_FORBIDDEN_OPTIONS = {
    "acks": frozenset({"all", -1}),
    "enable_idempotence": frozenset({True}),
}
# Set by the publisher itself; a passthrough value would break signing or the record format.
_RESERVED_OPTIONS = frozenset(
    {"key_serializer", "value_serializer", "transactional_id", "kafka_client"}
)
# Set by producer_config over REVOCAST_KAFKA_OPTIONS (producer_options may still change
# linger_ms; the others are checked there).
_SET_OVER_SHARED = frozenset(
    {
        "acks",
        "enable_idempotence",
        "delivery_timeout_ms",
        "max_block_ms",
        "bootstrap_timeout_ms",
        "linger_ms",
        "allow_auto_create_topics",
    }
)


@dataclass(frozen=True, kw_only=True)
class PublisherSettings:
    """How the identity service publishes revocations.

    Durations are in seconds. ``max_token_lifetime`` is the longest lifetime of any token the
    issuer mints: rules that outlive no token (session, subject, version, deletion, unblock,
    global) expire that long after they take effect.

    ``delivery="outbox"`` (default) writes every event to the SQLite file ``outbox_path``
    before sending it, so nothing is lost while Kafka is down; ``"direct"`` sends straight to
    Kafka and raises :class:`~producer.PublishError` on failure. Processes may share one
    ``outbox_path`` (gunicorn workers, or an old and a new process during a restart): only the
    one holding the file's drain lease sends, in publish order, and the others' calls return
    its acks. A holder that is killed keeps the lease for up to ``outbox_lease`` seconds; one
    that stalls longer than that may have its last batch sent again by the next holder.
    """

    issuer: str
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    signing_key: SigningKey | None = field(default=None, repr=False)
    allow_unsigned: bool = False
    max_token_lifetime: float = 3600.0
    delivery: DeliveryMode = "outbox"
    outbox_path: Path = DEFAULT_OUTBOX_PATH
    ack_timeout: float = 5.0
    """How long a publish call waits for the broker's ack (outbox mode: then reports queued)."""
    delivery_timeout: float = 30.0
    """Upper bound for one send attempt to be acknowledged (kafka ``delivery_timeout_ms``)."""
    max_block: float = 10.0
    """Upper bound to connect and to fetch metadata (``max_block_ms``, ``bootstrap_timeout_ms``)."""
    outbox_lease: float = 30.0
    """How long the drain lease of a shared outbox outlives its holder's last renewal (>= 1):
    how long the other processes wait for a killed holder before one of them sends."""
    producer_options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    """Extra kafka-python producer options (``linger_ms``, ``compression_type``…)."""

    def __post_init__(self) -> None:
        _check_issuer("issuer", self.issuer)
        if self.signing_key is None and not self.allow_unsigned:
            raise SettingsError(
                "no signing key: set signing_key (REVOCAST_SIGNING_KEY) "
                "or allow_unsigned=True for local development"
            )
        if self.delivery not in get_args(DeliveryMode):
            raise SettingsError(f"delivery must be 'outbox' or 'direct', got {self.delivery!r}")
        for name in _DURATIONS:
            _check_positive(name, getattr(self, name))
        _check_lease("outbox_lease", self.outbox_lease)
        _check_producer_options("producer_options", self.producer_options)
        _check_shared_options("kafka.extra", self.kafka.extra)
        # Read-only: a mutation after validation (acks=0) would skip the check above.
        object.__setattr__(self, "producer_options", MappingProxyType(dict(self.producer_options)))
        object.__setattr__(self, "outbox_path", Path(self.outbox_path))

    @property
    def token_lifetime(self) -> timedelta:
        return timedelta(seconds=self.max_token_lifetime)

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> PublisherSettings:
        """Read the settings from ``{prefix}*`` variables (see the README table).

        ``EVENT_ISSUER`` (required; the consumer SDK's ``ISSUER`` is the JWT issuer, a
        different thing), ``SIGNING_KEY`` (``kid:hmac:…`` or ``kid:ed25519:…``; required
        unless ``ALLOW_UNSIGNED=true``), ``MAX_TOKEN_LIFETIME``, ``DELIVERY``, ``OUTBOX_PATH``,
        ``ACK_TIMEOUT``, ``DELIVERY_TIMEOUT``, ``MAX_BLOCK``, ``OUTBOX_LEASE``,
        ``PRODUCER_OPTIONS`` (JSON object)
        and the Kafka variables of :meth:`KafkaSettings.from_env`. Errors name the variable.
        """
        env = os.environ if environ is None else environ
        kafka = KafkaSettings.from_env(prefix, env)
        _check_shared_options(f"{prefix}KAFKA_OPTIONS", kafka.extra)
        kwargs: dict[str, Any] = {"kafka": kafka}

        issuer = env_str(env, f"{prefix}EVENT_ISSUER")
        if issuer is None:
            raise SettingsError(
                f"{prefix}EVENT_ISSUER is not set (the name of the publishing service)"
            )
        _check_issuer(f"{prefix}EVENT_ISSUER", issuer)
        kwargs["issuer"] = issuer

        allow_unsigned = env_bool(env, f"{prefix}ALLOW_UNSIGNED") or False
        kwargs["allow_unsigned"] = allow_unsigned
        signing_key = env_signing_key(env, f"{prefix}SIGNING_KEY")
        if signing_key is not None:
            kwargs["signing_key"] = signing_key
        elif not allow_unsigned:
            raise SettingsError(
                f"{prefix}SIGNING_KEY is not set (generate one with 'revocast keys generate', "
                f"or set {prefix}ALLOW_UNSIGNED=true for local development)"
            )

        delivery = env_str(env, f"{prefix}DELIVERY")
        if delivery is not None:
            if delivery not in get_args(DeliveryMode):
                raise SettingsError(
                    f"{prefix}DELIVERY must be 'outbox' or 'direct', got {delivery!r}"
                )
            kwargs["delivery"] = delivery
        path = env_str(env, f"{prefix}OUTBOX_PATH")
        if path is not None:
            kwargs["outbox_path"] = Path(path)
        for name in _DURATIONS:
            var = f"{prefix}{name.upper()}"
            value = env_float(env, var)
            if value is not None:
                _check_positive(var, value)
                kwargs[name] = value
        _check_lease(f"{prefix}OUTBOX_LEASE", kwargs.get("outbox_lease", _MIN_LEASE))
        options = env_str(env, f"{prefix}PRODUCER_OPTIONS")
        if options is not None:
            var = f"{prefix}PRODUCER_OPTIONS"
            try:
                parsed = json.loads(options)
            except (ValueError, RecursionError):  # deeply nested JSON: RecursionError
                raise SettingsError(f"{var} is not valid JSON") from None
            if not isinstance(parsed, dict):
                raise SettingsError(f"{var} must be a JSON object")
            _check_producer_options(var, parsed)
            kwargs["producer_options"] = parsed
        return cls(**kwargs)


def _check_issuer(label: str, value: str) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise SettingsError(f"{label} must be 1-256 characters, got {value!r}")


def _check_positive(label: str, value: float) -> None:
    # Bounded: an infinite or huge duration overflows the datetime, timedelta and C timeouts
    # it feeds, and every publish would then fail.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= _MAX_DURATION
    ):
        raise SettingsError(
            f"{label} must be a number of seconds > 0 and <= {_MAX_DURATION:.0f} (100 years), "
            f"got {value!r}"
        )


def _check_lease(label: str, value: float) -> None:
    if value < _MIN_LEASE:
        raise SettingsError(f"{label} must be at least {_MIN_LEASE:g} second, got {value!r}")


def _check_producer_options(label: str, options: Mapping[str, Any]) -> None:
    for key, value in options.items():
        allowed = _FORBIDDEN_OPTIONS.get(key)
        if allowed is not None and not _among(value, allowed):
            raise SettingsError(
                f"{label}: {key}={value!r} would disable idempotent acks=all delivery"
            )
        if key in _RESERVED_OPTIONS:
            raise SettingsError(f"{label}: {key} is set by the publisher and cannot be passed")
        if key not in KafkaProducer.DEFAULT_CONFIG:
            raise SettingsError(f"{label}: {key!r} is not a kafka-python producer option")
        if key == "allow_auto_create_topics" and value is not False:
            raise SettingsError(
                f"{label}: allow_auto_create_topics must be false: a misspelt topic would be "
                "created with the broker's default (possibly short) retention"
            )
        _check_idempotence_limits(label, key, value)


def _check_shared_options(label: str, options: Mapping[str, Any]) -> None:
    """The producer's share of ``REVOCAST_KAFKA_OPTIONS``: what reaches kafka-python's
    producer unchanged must not make it refuse to start (idempotence conflicts) or break the
    records."""
    for key, value in options.items():
        if key not in KafkaProducer.DEFAULT_CONFIG or key in _SET_OVER_SHARED:
            continue
        if key in _RESERVED_OPTIONS:
            raise SettingsError(f"{label}: {key} is set by the publisher and cannot be passed")
        _check_idempotence_limits(label, key, value)


def _check_idempotence_limits(label: str, key: str, value: Any) -> None:
    # kafka-python refuses these with enable_idempotence=True, but only when the producer is
    # built: in outbox mode the drainer would then log it forever and deliver nothing.
    if key == "retries" and (
        isinstance(value, bool) or not isinstance(value, int | float) or not value >= 1
    ):
        raise SettingsError(
            f"{label}: retries must be at least 1 for idempotent delivery, got {value!r}"
        )
    if key == "max_in_flight_requests_per_connection" and (
        type(value) is not int or not 1 <= value <= 5
    ):
        raise SettingsError(
            f"{label}: max_in_flight_requests_per_connection must be 1 to 5 for idempotent, "
            f"ordered delivery, got {value!r}"
        )
    if key in _TIMING_OPTIONS and (type(value) is not int or value < 0):
        raise SettingsError(f"{label}: {key} must be a whole number of ms, got {value!r}")


def _among(value: Any, allowed: Collection[Any]) -> bool:
    """``value in allowed``, false for an unhashable value (a JSON list or object)."""
    try:
        return value in allowed
    except TypeError:
        return False


# Options the publisher computes with (delivery_timeout_ms >= linger_ms + request_timeout_ms).
_TIMING_OPTIONS = frozenset({"linger_ms", "request_timeout_ms"})
