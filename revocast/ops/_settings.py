"""What the operator commands need: Kafka, the event keys, the longest token lifetime."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from revocation_events import (
    EventCodec,
    EventVerifier,
    KafkaSettings,
    SettingsError,
    VerificationKey,
    env_bool,
    env_float,
    env_str,
    env_verification_keys,
)

__all__ = ["OpsSettings"]


@dataclass(frozen=True, kw_only=True)
class OpsSettings:
    kafka: KafkaSettings
    event_keys: tuple[VerificationKey, ...] = ()
    allow_unsigned_events: bool = False
    max_token_lifetime: float = 3600.0
    version_claim: str = "ver"

    def __post_init__(self) -> None:
        if not self.event_keys and not self.allow_unsigned_events:
            raise SettingsError(
                "no event verification keys: set REVOCAST_EVENT_KEYS "
                "(or REVOCAST_ALLOW_UNSIGNED_EVENTS=true for local development)"
            )
        if self.max_token_lifetime <= 0:
            raise SettingsError("REVOCAST_MAX_TOKEN_LIFETIME must be > 0")

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> OpsSettings:
        env = os.environ if environ is None else environ
        keys = env_verification_keys(env, f"{prefix}EVENT_KEYS") or ()
        lifetime = env_float(env, f"{prefix}MAX_TOKEN_LIFETIME")
        return cls(
            kafka=KafkaSettings.from_env(prefix, env),
            event_keys=keys,
            allow_unsigned_events=env_bool(env, f"{prefix}ALLOW_UNSIGNED_EVENTS") or False,
            max_token_lifetime=3600.0 if lifetime is None else lifetime,
            version_claim=env_str(env, f"{prefix}VERSION_CLAIM") or "ver",
        )

    def codec(self) -> EventCodec:
        return EventCodec(
            verifier=EventVerifier(self.event_keys) if self.event_keys else None,
            require_signature=not self.allow_unsigned_events,
        )
