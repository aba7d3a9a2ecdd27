"""What the operator commands need: Kafka, the event keys, the longest token lifetime, and the
streams worker's own settings where a command must act as the worker would."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

from revocast._lifetime import check_token_lifetime, env_token_lifetime
from revocation_events import (
    EventCodec,
    EventVerifier,
    KafkaSettings,
    SettingsError,
    VerificationKey,
    env_bool,
    env_str,
    env_verification_keys,
)
from streams import StreamsSettings

__all__ = ["OpsSettings"]


@dataclass(frozen=True, kw_only=True)
class OpsSettings:
    kafka: KafkaSettings
    event_keys: tuple[VerificationKey, ...] = ()
    allow_unsigned_events: bool = False
    max_token_lifetime: float = 3600.0
    version_claim: str = "ver"
    streams: StreamsSettings | None = None
    """The streams worker's settings (``REVOCAST_STREAMS_*``, read by the worker's own
    :meth:`StreamsSettings.from_env`): ``rebuild-state`` creates the state topic as the
    worker would. Only its topic and group settings are used; events are decoded with
    :meth:`codec`. ``None``: the worker's defaults."""

    def __post_init__(self) -> None:
        if not self.event_keys and not self.allow_unsigned_events:
            raise SettingsError(
                "no event verification keys: set REVOCAST_EVENT_KEYS "
                "(or REVOCAST_ALLOW_UNSIGNED_EVENTS=true for local development)"
            )
        check_token_lifetime("REVOCAST_MAX_TOKEN_LIFETIME", self.max_token_lifetime)

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> OpsSettings:
        env = os.environ if environ is None else environ
        keys = env_verification_keys(env, f"{prefix}EVENT_KEYS") or ()
        settings = cls(
            kafka=KafkaSettings.from_env(prefix, env),
            event_keys=keys,
            allow_unsigned_events=env_bool(env, f"{prefix}ALLOW_UNSIGNED_EVENTS") or False,
            max_token_lifetime=env_token_lifetime(env, prefix),
            version_claim=env_str(env, f"{prefix}VERSION_CLAIM") or "ver",
        )
        # The worker refuses settings without event keys unless told to run unsigned; ours
        # were checked above (and its keys are never used here).
        worker_env = env if keys else {**env, f"{prefix}STREAMS_ALLOW_UNSIGNED": "true"}
        worker = StreamsSettings.from_env(prefix, worker_env)
        return dataclasses.replace(settings, streams=worker)

    def worker_settings(self) -> StreamsSettings:
        """:attr:`streams`, or the worker's defaults over this Kafka and these keys."""
        if self.streams is not None:
            return self.streams
        return StreamsSettings(
            kafka=self.kafka,
            verification_keys=self.event_keys,
            allow_unsigned=self.allow_unsigned_events,
        )

    def codec(self) -> EventCodec:
        return EventCodec(
            verifier=EventVerifier(self.event_keys) if self.event_keys else None,
            require_signature=not self.allow_unsigned_events,
        )
