"""Settings of the streams worker, read from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from consumer_sdk._settings import _TOPIC_ENV_NAMES as _ENV_NAMES
from consumer_sdk._settings import MAX_LEEWAY, derived_topics
from revocation_events import (
    EventCodec,
    EventVerifier,
    KafkaSettings,
    SettingsError,
    SigningKey,
    VerificationKey,
    env_bool,
    env_float,
    env_int,
    env_signing_key,
    env_str,
    env_verification_keys,
)

__all__ = ["StreamsSettings", "derived_topics", "topic_overrides"]


# Durations in seconds (floats from the environment, finite).
_MAX_SECONDS = 100 * 365 * 86_400.0
_SECONDS = (
    "window_grace_seconds",
    "tick_seconds",
    "commit_interval_seconds",
    "session_timeout_seconds",
    "snapshot_interval_seconds",
    "expiry_margin_seconds",
)


def topic_overrides(env: Mapping[str, str], prefix: str = "REVOCAST_") -> dict[str, str]:
    """``{prefix}STATE_TOPIC`` and ``{prefix}SNAPSHOT_TOPIC``, those set and not blank, as
    keyword arguments of :func:`derived_topics` (and :class:`StreamsSettings`)."""
    found = {name: env_str(env, f"{prefix}{name.upper()}") for name in _ENV_NAMES}
    return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True, kw_only=True)
class StreamsSettings:
    """Everything the worker needs; see :meth:`from_env` for the variable names."""

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    state_topic: str = ""
    """``REVOCAST_STATE_TOPIC``, as the consumer SDK reads it. Empty: ``<log>.state``;
    resolved when the settings are made (:func:`derived_topics`), so a copy made with
    :func:`dataclasses.replace` and another ``kafka`` keeps the first log's name."""
    snapshot_topic: str = ""
    """``REVOCAST_SNAPSHOT_TOPIC``, as the consumer SDK reads it. Empty: ``<log>.snapshots``."""
    app_id: str = "revocast-streams"
    data_dir: str = ".revocast/streams"
    replication_factor: int | None = None
    """For the topics this app creates (state, snapshots, stats, alerts, ticks, table
    changelogs, faust's leader topic). ``None`` (auto): as the log topic's default, min(3,
    brokers), counted once at start-up (:func:`streams._topics.prepare_topics`)."""
    verification_keys: tuple[VerificationKey, ...] = field(default=(), repr=False)
    allow_unsigned: bool = False
    """Accept records without a signature header. Only for development."""
    window_seconds: int = 60
    window_grace_seconds: float = 5.0
    """How long after its end a window stays open for slightly late records."""
    alert_blocks_per_window: int = 100
    alert_global_per_window: int = 0
    """Alert when more than this many global revocations land in one window (0: on any)."""
    tick_seconds: float = 1.0
    """How often expiry sweeps, window closing and offset markers run."""
    commit_interval_seconds: float = 1.0
    session_timeout_seconds: float = 10.0
    state_segment_ms: int = 3_600_000
    state_min_compaction_lag_ms: int = 0
    state_delete_retention_ms: int = 86_400_000
    snapshot_signing_key: SigningKey | None = field(default=None, repr=False)
    """Signs snapshots (``REVOCAST_SNAPSHOT_SIGNING_KEY``); without it no snapshot is
    written. Give SDKs its verification key as ``REVOCAST_SNAPSHOT_KEYS``."""
    snapshot_previous_keys: tuple[VerificationKey, ...] = field(default=(), repr=False)
    """``REVOCAST_SNAPSHOT_PREVIOUS_KEYS``: verification keys of earlier snapshot signing keys.
    After a rotation the snapshotter still resumes from its own snapshots signed by one of
    them; they never sign, and nothing else is read with them."""
    snapshot_interval_seconds: float = 60.0
    """At most this often, a log partition that changed gets a new snapshot."""
    snapshot_chunk_bytes: int = 1_000_000
    """Largest chunk value; must stay below the topic's ``max.message.bytes``."""
    max_token_lifetime: float = 3600.0
    """``REVOCAST_MAX_TOKEN_LIFETIME``: snapshots keep every rule that still matters to an
    SDK whose ``max_token_lifetime`` is this; an SDK configured with any other value (longer
    or shorter) refuses them (``lifetime``) and bootstraps from the state topic or the log."""
    expiry_margin_seconds: float = MAX_LEEWAY
    """How long past its ``expires_at`` a rule stays in the state topic (and a late event is
    still accepted). An SDK with a ``leeway`` keeps its entries that long past
    ``expires_at``, and one bootstrapping from the state topic meanwhile must still find
    them: keep it at least the SDKs' leeway (default: the largest leeway an SDK accepts)."""

    def __post_init__(self) -> None:
        state, snapshot = derived_topics(
            self.kafka.topic, state_topic=self.state_topic, snapshot_topic=self.snapshot_topic
        )
        object.__setattr__(self, "state_topic", state)
        object.__setattr__(self, "snapshot_topic", snapshot)
        checks = {
            "app_id": bool(self.app_id),
            "replication_factor": self.replication_factor is None or self.replication_factor >= 1,
            "window_seconds": self.window_seconds >= 1,
            "window_grace_seconds": self.window_grace_seconds >= 0,
            "alert_blocks_per_window": self.alert_blocks_per_window >= 0,
            "alert_global_per_window": self.alert_global_per_window >= 0,
            "tick_seconds": self.tick_seconds > 0,
            "commit_interval_seconds": self.commit_interval_seconds > 0,
            "session_timeout_seconds": self.session_timeout_seconds > 0,
            "state_segment_ms": self.state_segment_ms >= 1000,
            "state_min_compaction_lag_ms": self.state_min_compaction_lag_ms >= 0,
            "state_delete_retention_ms": self.state_delete_retention_ms >= 0,
            "snapshot_interval_seconds": self.snapshot_interval_seconds > 0,
            "snapshot_chunk_bytes": 4096 <= self.snapshot_chunk_bytes <= 1_000_000,
            "max_token_lifetime": self.max_token_lifetime > 0,
            "expiry_margin_seconds": self.expiry_margin_seconds >= 0,
        }
        for name in (*_SECONDS, "max_token_lifetime"):
            # "inf" parses as a float and passes every range check: an infinite tick never
            # writes a marker or sweeps, an infinite session timeout overflows in aiokafka.
            # Finite but huge (1e300) overflows in asyncio's timers and aiokafka's timeouts.
            value = getattr(self, name)
            checks[name] = checks[name] and math.isfinite(value) and value <= _MAX_SECONDS
        for name, ok in checks.items():
            if not ok:
                raise SettingsError(f"{name} has an invalid value: {getattr(self, name)!r}")
        signing = self.snapshot_signing_key
        if signing is not None and any(k.kid == signing.kid for k in self.snapshot_previous_keys):
            # A verifier keeps one key per kid: the previous one would shadow the current one.
            raise SettingsError(
                "snapshot_previous_keys (REVOCAST_SNAPSHOT_PREVIOUS_KEYS) reuses the id "
                f"{signing.kid!r} of the snapshot signing key: give a new key a new id"
            )
        others = {self.stats_topic, self.alerts_topic, self.ticks_topic, *self.changelog_topics}
        for name in ("state_topic", "snapshot_topic"):
            if getattr(self, name) in others:
                # The worker would write its stats, alerts or tables into it.
                raise SettingsError(
                    f"{name} ({_ENV_NAMES[name]}) {getattr(self, name)!r} is another topic "
                    "of the worker: it needs a topic of its own"
                )
        if not self.verification_keys and not self.allow_unsigned:
            raise SettingsError(
                "no verification keys: set REVOCAST_EVENT_KEYS, or allow unsigned events "
                "explicitly with REVOCAST_STREAMS_ALLOW_UNSIGNED=true"
            )

    @property
    def log_topic(self) -> str:
        return self.kafka.topic

    @property
    def stats_topic(self) -> str:
        return f"{self.kafka.topic}.stats"

    @property
    def alerts_topic(self) -> str:
        return f"{self.kafka.topic}.alerts"

    @property
    def ticks_topic(self) -> str:
        # Per app id: two apps over the same log must not sweep on each other's ticks.
        return f"{self.app_id}-ticks"

    @property
    def changelog_topics(self) -> tuple[str, ...]:
        """faust's changelog topics of the ``rules`` and ``windows`` tables."""
        return tuple(f"{self.app_id}-{table}-changelog" for table in ("rules", "windows"))

    def codec(self) -> EventCodec:
        """A codec that verifies like the consumer SDK does."""
        verifier = EventVerifier(self.verification_keys) if self.verification_keys else None
        return EventCodec(verifier=verifier, require_signature=not self.allow_unsigned)

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> StreamsSettings:
        """Read Kafka settings as :meth:`KafkaSettings.from_env` does, ``{prefix}EVENT_KEYS``,
        ``{prefix}STATE_TOPIC``, ``{prefix}SNAPSHOT_TOPIC`` (the consumer SDK's variables),
        ``{prefix}SNAPSHOT_SIGNING_KEY``, ``{prefix}SNAPSHOT_PREVIOUS_KEYS``,
        ``{prefix}MAX_TOKEN_LIFETIME``, and
        ``{prefix}STREAMS_*``: ``APP_ID``, ``DATA_DIR``, ``REPLICATION_FACTOR``,
        ``ALLOW_UNSIGNED`` (or ``{prefix}ALLOW_UNSIGNED_EVENTS``, as SDKs read it),
        ``WINDOW_SECONDS``, ``WINDOW_GRACE_SECONDS``,
        ``ALERT_BLOCKS_PER_WINDOW``, ``ALERT_GLOBAL_PER_WINDOW``, ``TICK_SECONDS``,
        ``COMMIT_INTERVAL_SECONDS``, ``SESSION_TIMEOUT_SECONDS``, ``STATE_SEGMENT_MS``,
        ``STATE_MIN_COMPACTION_LAG_MS``, ``STATE_DELETE_RETENTION_MS``,
        ``SNAPSHOT_INTERVAL_SECONDS``, ``SNAPSHOT_CHUNK_BYTES``, ``EXPIRY_MARGIN_SECONDS``."""
        env = os.environ if environ is None else environ
        s = f"{prefix}STREAMS_"
        kwargs: dict[str, object] = {"kafka": KafkaSettings.from_env(prefix, env)}
        kwargs.update(topic_overrides(env, prefix))
        keys = env_verification_keys(env, f"{prefix}EVENT_KEYS")
        if keys is not None:
            kwargs["verification_keys"] = keys
        signing = env_signing_key(env, f"{prefix}SNAPSHOT_SIGNING_KEY")
        if signing is not None:
            kwargs["snapshot_signing_key"] = signing
        previous = env_verification_keys(env, f"{prefix}SNAPSHOT_PREVIOUS_KEYS")
        if previous is not None:
            kwargs["snapshot_previous_keys"] = previous
        lifetime = env_float(env, f"{prefix}MAX_TOKEN_LIFETIME")
        if lifetime is not None:
            kwargs["max_token_lifetime"] = lifetime
        for name in ("app_id", "data_dir"):
            text = env_str(env, f"{s}{name.upper()}")
            if text is not None:
                kwargs[name] = text
        for name in (
            "replication_factor",
            "window_seconds",
            "alert_blocks_per_window",
            "alert_global_per_window",
            "state_segment_ms",
            "state_min_compaction_lag_ms",
            "state_delete_retention_ms",
            "snapshot_chunk_bytes",
        ):
            number = env_int(env, f"{s}{name.upper()}")
            if number is not None:
                kwargs[name] = number
        for name in _SECONDS:
            real = env_float(env, f"{s}{name.upper()}")
            if real is not None:
                kwargs[name] = real
        # The SDK's and the CLI's name for accepting unsigned events, and the worker's older
        # one: either may be set, but not to different values.
        flags = {
            name: flag
            for name in (f"{prefix}ALLOW_UNSIGNED_EVENTS", f"{s}ALLOW_UNSIGNED")
            if (flag := env_bool(env, name)) is not None
        }
        if len(set(flags.values())) > 1:
            raise SettingsError(
                f"{' and '.join(flags)} disagree: set one of them (prefix {prefix!r})"
            )
        if flags:
            kwargs["allow_unsigned"] = next(iter(flags.values()))
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except SettingsError as exc:
            raise SettingsError(f"{exc} (from environment, prefix {prefix!r})") from None
