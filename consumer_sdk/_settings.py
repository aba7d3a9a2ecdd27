"""Consumer SDK settings: frozen, keyword-only, with :meth:`ConsumerSettings.from_env`."""

from __future__ import annotations

import enum
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from jwt.algorithms import get_default_algorithms

from revocation_events import (
    KafkaSettings,
    SettingsError,
    VerificationKey,
    check_topic_name,
    env_bool,
    env_float,
    env_int,
    env_str,
    env_verification_keys,
)

__all__ = ["MAX_LEEWAY", "ConsumerSettings", "FailurePolicy", "KeyMaterial", "derived_topics"]

MAX_LEEWAY = 300.0
"""Seconds. A larger clock-skew allowance would keep expired tokens alive for too long."""

KeyMaterial = str | bytes
"""A PEM public key, a JWK JSON object (``str`` starting with ``{``) or an HMAC secret."""


class FailurePolicy(enum.Enum):
    """What :meth:`Revocast.verify` does when the revocation state cannot be trusted."""

    REFUSE = "refuse"
    """Fail closed (default): raise :class:`StateUnavailableError`."""
    ACCEPT = "accept"
    """Fail open (opt-in): accept on signature and claims alone, and log a warning."""


_MAX_SECONDS = 100 * 365 * 86_400.0
_SECONDS = (
    "jwks_refresh_interval",
    "jwks_min_refresh_interval",
    "leeway",
    "max_token_lifetime",
    "max_staleness",
    "partition_check_interval",
    "expire_interval",
    "heartbeat_interval",
)


_TOPIC_ENV_NAMES = {
    "state_topic": "REVOCAST_STATE_TOPIC",
    "snapshot_topic": "REVOCAST_SNAPSHOT_TOPIC",
}
"""With the default prefix: the consumer SDK's own variables (ConsumerSettings.from_env)."""


def derived_topics(
    log_topic: str, *, state_topic: str | None = None, snapshot_topic: str | None = None
) -> tuple[str, str]:
    """The state and snapshot topics of the log ``log_topic``: ``state_topic`` and
    ``snapshot_topic`` when given (not empty), else ``<log>.state`` and ``<log>.snapshots``,
    the defaults the consumer SDK gives its settings of the same names. The worker, the
    operator commands and the SDKs resolve them alike, so one ``REVOCAST_STATE_TOPIC`` /
    ``REVOCAST_SNAPSHOT_TOPIC`` names the topics for all of them.

    Raises :class:`SettingsError` when either is the log topic, or both are one topic:
    markers and snapshot chunks would land among the records they describe."""
    state = state_topic or f"{log_topic}.state"
    snapshot = snapshot_topic or f"{log_topic}.snapshots"
    for name, topic in (("state_topic", state), ("snapshot_topic", snapshot)):
        # A log name near the length limit gives derived names Kafka refuses.
        check_topic_name(f"{name} ({_TOPIC_ENV_NAMES[name]})", topic)
        if topic == log_topic:
            raise SettingsError(
                f"{name} ({_TOPIC_ENV_NAMES[name]}) is the log topic {topic!r}: "
                "it needs a topic of its own"
            )
    if state == snapshot:
        raise SettingsError(
            f"state_topic and snapshot_topic ({_TOPIC_ENV_NAMES['state_topic']}, "
            f"{_TOPIC_ENV_NAMES['snapshot_topic']}) are both {state!r}: "
            "each needs a topic of its own"
        )
    return state, snapshot


@dataclass(frozen=True, kw_only=True)
class ConsumerSettings:
    """Everything a service needs to verify tokens and follow the revocation topic.

    Keys: either ``jwt_keys`` (``kid`` -> material; a single key may use any kid and then
    also matches tokens without a ``kid`` header, or naming another one: a ``KeyRevoked``
    for its configured kid refuses all of them, so name it as the identity provider does)
    or ``jwks_url``, not both.
    ``algorithms`` is required and pinned: a token whose header names another algorithm is
    refused before any key is used.
    """

    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    algorithms: tuple[str, ...]
    jwt_keys: Mapping[str, KeyMaterial] = field(default_factory=dict, repr=False)
    jwks_url: str | None = None
    jwks_refresh_interval: float = 300.0
    """Seconds between background JWKS refreshes."""
    jwks_min_refresh_interval: float = 30.0
    """An unknown ``kid`` triggers a background refresh at most this often."""
    issuer: str | None = None
    audience: tuple[str, ...] = ()
    require_sub: bool = False
    leeway: float = 0.0
    max_token_lifetime: float = 3600.0
    """Seconds; the longest ``exp - iat`` of any token. Bounds the replay window."""
    replay_from_beginning: bool = False
    """Replay the whole retained topic rather than ``max_token_lifetime`` back. Key
    revocations and blocks never expire by time, yet a log replay reaches only as far back
    as it reads (and retention keeps): ``bootstrap="state"`` keeps them whatever their age
    (README, "Fast bootstrap"; docs/operations.md, bootstrap modes)."""
    bootstrap: Literal["log", "state"] = "log"
    """``"log"``: replay the log (``max_token_lifetime`` back). ``"state"``: load the
    compacted state topic the streams worker maintains, then replay the log only from where
    the state is complete; falls back to ``"log"`` when the state topic is unusable."""
    state_topic: str | None = None
    """The state topic for ``bootstrap="state"``. Default: ``<topic>.state``."""
    snapshot_keys: tuple[VerificationKey, ...] = ()
    """Keys trusted to sign state snapshots (the streams worker's
    ``REVOCAST_SNAPSHOT_SIGNING_KEY``), kept apart from ``event_keys``. With
    ``bootstrap="state"``, a snapshot signed by one of them is loaded before the state topic
    and the log; with none, snapshots are ignored."""
    snapshot_topic: str | None = None
    """Default: ``<topic>.snapshots``."""
    version_claim: str = "ver"
    event_keys: tuple[VerificationKey, ...] = ()
    allow_unsigned_events: bool = False
    failure_policy: FailurePolicy = FailurePolicy.REFUSE
    max_staleness: float = 30.0
    """Seconds an INTERRUPTED source may serve the last state before verify fails closed."""
    max_token_bytes: int = 8 * 1024
    poll_timeout_ms: int = 500
    partition_check_interval: float = 5.0
    expire_interval: float = 30.0
    service_name: str = "revocast"
    heartbeat_interval: float = 10.0
    """Seconds between heartbeats to ``heartbeat_topic`` (read by ``revocast status``); 0: off."""
    heartbeat_topic: str | None = None
    """Default: ``<topic>.heartbeats``."""
    verify_cache_size: int = 0
    """Opt-in: remember this many verified tokens (LRU, exact token bytes) so a repeated token
    skips the signature check; time claims, revocation and status are still checked on every
    call (see :class:`consumer_sdk._verify.VerifyCache`). 0 (default): off."""
    gc_freeze_when_ready: bool = False
    """Opt-in: call :func:`gc.freeze` once per process, the first time
    :meth:`Revocast.wait_until_ready` succeeds, so the objects built at start-up (modules,
    the replayed state, the application's own) are no longer scanned by every full garbage
    collection. Process-wide: leave it off when the application manages the collector itself
    (for example freezes in the parent before forking workers)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "jwt_keys", MappingProxyType(dict(self.jwt_keys)))
        algs = tuple(self.algorithms)
        object.__setattr__(self, "algorithms", algs)
        object.__setattr__(self, "audience", tuple(self.audience))
        state, snapshot = derived_topics(
            self.kafka.topic, state_topic=self.state_topic, snapshot_topic=self.snapshot_topic
        )
        if self.heartbeat_topic is not None:
            check_topic_name("heartbeat_topic (REVOCAST_HEARTBEAT_TOPIC)", self.heartbeat_topic)
        if self.heartbeat_topic in (self.kafka.topic, state, snapshot):
            # Every instance would write its heartbeats among the revocations or the state.
            raise SettingsError(
                f"heartbeat_topic (REVOCAST_HEARTBEAT_TOPIC) {self.heartbeat_topic!r} is the "
                "log, state or snapshot topic: it needs a topic of its own"
            )
        known = get_default_algorithms()
        if not algs:
            raise SettingsError("algorithms is required, e.g. ('RS256',)")
        for alg in algs:
            if alg.lower() == "none":
                raise SettingsError("algorithms may not include 'none'")
            if alg not in known:
                raise SettingsError(f"algorithms: unknown algorithm {alg!r}")
        for name in _SECONDS:
            value = getattr(self, name)
            # "nan" and "inf" parse as floats and slip past every range check below: NaN
            # compares False, so it reached int() deep in the Kafka and JWKS threads, and
            # inf max_staleness meant an interrupted stream was trusted forever.
            if not math.isfinite(value):
                raise SettingsError(f"{name} must be a finite number of seconds, got {value}")
            # Finite but huge (1e30) overflowed in a background thread's wait, killing it
            # (the JWKS refresher: key rotation stopped).
            if abs(value) > _MAX_SECONDS:
                raise SettingsError(
                    f"{name} must be at most {_MAX_SECONDS:.0f} s (100 years), got {value}"
                )
        if bool(self.jwt_keys) == bool(self.jwks_url):
            raise SettingsError("give exactly one of jwt_keys or jwks_url")
        if not 0 <= self.leeway <= MAX_LEEWAY:
            raise SettingsError(f"leeway must be between 0 and {MAX_LEEWAY:g} s, got {self.leeway}")
        if self.max_token_lifetime <= 0:
            raise SettingsError(f"max_token_lifetime must be > 0, got {self.max_token_lifetime}")
        if self.max_staleness < 0:
            raise SettingsError(f"max_staleness must be >= 0, got {self.max_staleness}")
        if self.max_token_bytes < 64:
            raise SettingsError(f"max_token_bytes must be >= 64, got {self.max_token_bytes}")
        for name in ("poll_timeout_ms", "partition_check_interval", "expire_interval"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.bootstrap not in ("log", "state"):
            raise SettingsError(f"bootstrap must be 'log' or 'state', got {self.bootstrap!r}")
        if self.heartbeat_interval < 0:
            raise SettingsError(f"heartbeat_interval must be >= 0, got {self.heartbeat_interval}")
        if self.jwks_refresh_interval <= 0:
            raise SettingsError(
                f"jwks_refresh_interval must be > 0, got {self.jwks_refresh_interval}"
            )
        if self.jwks_min_refresh_interval < 0:
            raise SettingsError(
                f"jwks_min_refresh_interval must be >= 0, got {self.jwks_min_refresh_interval}"
            )
        if not self.version_claim:
            raise SettingsError("version_claim may not be empty")
        size = self.verify_cache_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise SettingsError(f"verify_cache_size must be an integer >= 0, got {size!r}")
        if not self.event_keys and not self.allow_unsigned_events:
            raise SettingsError(
                "no event verification keys: set event_keys (REVOCAST_EVENT_KEYS="
                "'kid:ed25519:<public key>' or 'kid:hmac:<secret>'), or, for development only, "
                "allow_unsigned_events=True (REVOCAST_ALLOW_UNSIGNED_EVENTS=true)"
            )

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_", environ: Mapping[str, str] | None = None
    ) -> ConsumerSettings:
        """Read ``{prefix}ALGORITHMS`` (comma list), ``{prefix}JWT_KEYS`` (JSON object
        kid -> PEM / JWK / secret) or ``{prefix}JWT_KEY`` (one key, kid ``{prefix}JWT_KID``,
        default ``default``: set it to the identity provider's kid so revoking that key holds)
        or ``{prefix}JWKS_URL``, ``{prefix}ISSUER``, ``{prefix}AUDIENCE`` (comma list),
        ``{prefix}EVENT_KEYS``, ``{prefix}SNAPSHOT_KEYS`` (same syntax), and one variable per
        other field in upper case (for example ``{prefix}MAX_STALENESS``,
        ``{prefix}FAILURE_POLICY=refuse|accept``), plus the Kafka variables of
        :meth:`KafkaSettings.from_env`."""
        env = os.environ if environ is None else environ
        p = prefix
        kwargs: dict[str, Any] = {"kafka": KafkaSettings.from_env(prefix, env)}
        algs = env_str(env, f"{p}ALGORITHMS")
        if algs is None:
            raise SettingsError(f"{p}ALGORITHMS is required (e.g. RS256)")
        kwargs["algorithms"] = tuple(a.strip() for a in algs.split(",") if a.strip())
        kwargs["jwt_keys"] = _jwt_keys_from_env(env, p)
        for name in (
            "jwks_url",
            "issuer",
            "version_claim",
            "service_name",
            "heartbeat_topic",
            "bootstrap",
            "state_topic",
            "snapshot_topic",
        ):
            text = env_str(env, f"{p}{name.upper()}")
            if text is not None:
                kwargs[name] = text
        mode = kwargs.get("bootstrap")
        if mode is not None and mode not in ("log", "state"):
            raise SettingsError(f"{p}BOOTSTRAP must be 'log' or 'state', got {mode!r}")
        audience = env_str(env, f"{p}AUDIENCE")
        if audience is not None:
            kwargs["audience"] = tuple(a.strip() for a in audience.split(",") if a.strip())
        for name in _SECONDS:
            number = env_float(env, f"{p}{name.upper()}")
            if number is not None:
                kwargs[name] = number
        for name in ("max_token_bytes", "poll_timeout_ms"):
            integer = env_int(env, f"{p}{name.upper()}")
            if integer is not None:
                kwargs[name] = integer
        cache_size = env_int(env, f"{p}VERIFY_CACHE_SIZE")
        if cache_size is not None:
            if cache_size < 0:
                raise SettingsError(f"{p}VERIFY_CACHE_SIZE must be >= 0, got {cache_size}")
            kwargs["verify_cache_size"] = cache_size
        for name in (
            "require_sub",
            "allow_unsigned_events",
            "replay_from_beginning",
            "gc_freeze_when_ready",
        ):
            flag = env_bool(env, f"{p}{name.upper()}")
            if flag is not None:
                kwargs[name] = flag
        policy = env_str(env, f"{p}FAILURE_POLICY")
        if policy is not None:
            try:
                kwargs["failure_policy"] = FailurePolicy(policy.lower())
            except ValueError:
                raise SettingsError(
                    f"{p}FAILURE_POLICY must be 'refuse' or 'accept', got {policy!r}"
                ) from None
        for name in ("event_keys", "snapshot_keys"):
            keys = env_verification_keys(env, f"{p}{name.upper()}")
            if keys is not None:
                kwargs[name] = keys
        try:
            return cls(**kwargs)
        except SettingsError as exc:
            raise SettingsError(f"{exc} (from environment, prefix {prefix!r})") from None


def _jwt_keys_from_env(env: Mapping[str, str], p: str) -> dict[str, KeyMaterial]:
    keys_json = env.get(f"{p}JWT_KEYS")
    single = env.get(f"{p}JWT_KEY")
    if keys_json and single:
        raise SettingsError(f"set only one of {p}JWT_KEYS and {p}JWT_KEY")
    if single:
        return {env_str(env, f"{p}JWT_KID") or "default": single}
    if not keys_json:
        return {}
    try:
        parsed = json.loads(keys_json)
    except (ValueError, RecursionError):  # deeply nested JSON: RecursionError
        raise SettingsError(f"{p}JWT_KEYS is not valid JSON (value not shown)") from None
    if not isinstance(parsed, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
    ):
        raise SettingsError(f"{p}JWT_KEYS must be a JSON object of kid -> key string")
    return dict(parsed)
