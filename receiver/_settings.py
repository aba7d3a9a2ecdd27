"""Receiver settings: frozen, keyword-only, readable from the environment.

Three optional sources, each its own small settings object: an SSF transmitter (push and/or
poll delivery of SETs), and an OpenID provider sending back-channel logout tokens. Durations
are in seconds.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from revocation_events import SettingsError, env_bool, env_float, env_int, env_str

__all__ = [
    "DEFAULT_ALGORITHMS",
    "DEFAULT_DEDUPE_PATH",
    "DEFAULT_MAX_ALIASES",
    "LogoutSettings",
    "MappingPolicy",
    "PollSettings",
    "ReceiverSettings",
    "TransmitterSettings",
]

DEFAULT_ALGORITHMS: tuple[str, ...] = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Asymmetric algorithms only: a transmitter's keys are public, so HS* would let anyone sign."""
DEFAULT_DEDUPE_PATH = Path(".revocast") / "receiver-dedupe.sqlite3"
DEFAULT_MAX_ALIASES = 32
"""RFC 9493 aliases list a few identifiers of one principal (one per system naming it)."""


def _check_algorithms(name: str, algorithms: tuple[str, ...]) -> None:
    if not algorithms:
        raise SettingsError(f"{name} may not be empty")
    bad = [a for a in algorithms if a not in DEFAULT_ALGORITHMS]
    if bad:
        raise SettingsError(
            f"{name}: {bad!r} not allowed (choose from {list(DEFAULT_ALGORITHMS)}; "
            "'none' and HS* are never accepted)"
        )


def _check_url(name: str, url: str | None, *, required: bool = False) -> None:
    if url is None:
        if required:
            raise SettingsError(f"{name} is required")
        return
    parts = urlsplit(url)
    if parts.scheme not in {"https", "http"} or not parts.netloc:
        raise SettingsError(f"{name} must be an http(s) URL, got {url!r}")


def _check_secure(name: str, url: str) -> None:
    """Keys and bearer tokens go over https; plain http only to this machine (tests, sidecars)."""
    parts = urlsplit(url)
    if parts.scheme.lower() == "https":
        return
    host = (parts.hostname or "").lower()
    loopback = host == "localhost"
    with suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme.lower() != "http" or not loopback:
        raise SettingsError(
            f"{name} {url!r} must be https (plain http only to a loopback host): keys and "
            "tokens fetched or sent over it could be swapped or read on the way"
        )


def well_known_url(issuer: str, name: str) -> str:
    """``/.well-known/{name}`` for ``issuer``, inserted before any path (RFC 8414 style)."""
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, f"/.well-known/{name}{path}", "", ""))


@dataclass(frozen=True, kw_only=True)
class TransmitterSettings:
    """The SSF transmitter whose SETs we accept.

    Keys come from ``jwks_uri`` when given, else from the ``jwks_uri`` of the transmitter's
    configuration document (``configuration_url``, default
    ``{issuer host}/.well-known/ssf-configuration{issuer path}``), whose ``issuer`` must equal
    ``issuer``. ``push_tokens`` are the bearer tokens the transmitter presents on push (several
    for rotation); with none, the push endpoint is off. ``subject_issuers``, when set, lists
    the only ``iss`` values an ``iss_sub`` / ``jwt_id`` subject may name; a SET naming another
    is refused with ``access_denied``, and so is an unblock (RISC ``account-enabled``) whose
    user is named without an issuer (``opaque``, ``email``).
    """

    issuer: str
    audience: tuple[str, ...]
    configuration_url: str | None = None
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    push_tokens: tuple[str, ...] = field(default=(), repr=False)
    subject_issuers: tuple[str, ...] = ()
    stream_id: str | None = None
    receiver_token: str | None = field(default=None, repr=False)
    """Bearer token we present to the transmitter (poll and verification endpoints)."""

    def __post_init__(self) -> None:
        if not self.issuer:
            raise SettingsError("transmitter issuer is required")
        if not self.audience or any(not a for a in self.audience):
            raise SettingsError("transmitter audience needs at least one non-empty value")
        _check_url("configuration_url", self.configuration_url)
        _check_url("jwks_uri", self.jwks_uri)
        if self.jwks_uri is not None:
            _check_secure("jwks_uri", self.jwks_uri)
        else:
            _check_secure("configuration_url", self.metadata_url)
        _check_algorithms("algorithms", self.algorithms)
        if any(len(t) < 16 for t in self.push_tokens):
            raise SettingsError("push tokens must be at least 16 characters")

    @property
    def metadata_url(self) -> str:
        return self.configuration_url or well_known_url(self.issuer, "ssf-configuration")


@dataclass(frozen=True, kw_only=True)
class PollSettings:
    """RFC 8936 poll delivery. ``return_immediately=False`` long-polls; otherwise the poller
    waits ``interval`` between empty answers. Failures back off exponentially to
    ``max_backoff`` unless the transmitter sends ``Retry-After``."""

    url: str
    max_events: int = 100
    return_immediately: bool = False
    interval: float = 5.0
    max_backoff: float = 300.0

    def __post_init__(self) -> None:
        _check_url("poll url", self.url, required=True)
        _check_secure("poll url", self.url)
        if not 1 <= self.max_events <= 10_000:
            raise SettingsError(f"poll max_events must be 1-10000, got {self.max_events}")
        if self.interval < 0 or self.max_backoff <= 0:
            raise SettingsError("poll interval must be >= 0 and max_backoff > 0")


@dataclass(frozen=True, kw_only=True)
class LogoutSettings:
    """The OpenID provider sending back-channel logout tokens to us (one relying party).

    ``audience`` is our client id(s). Keys come from ``jwks_uri`` or from the provider's
    ``/.well-known/openid-configuration``. ``max_age`` bounds how old a token's ``iat`` may be.
    """

    issuer: str
    audience: tuple[str, ...]
    configuration_url: str | None = None
    jwks_uri: str | None = None
    algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS
    max_age: float = 300.0

    def __post_init__(self) -> None:
        if not self.issuer:
            raise SettingsError("logout issuer is required")
        if not self.audience or any(not a for a in self.audience):
            raise SettingsError("logout audience needs at least one client id")
        _check_url("logout configuration_url", self.configuration_url)
        _check_url("logout jwks_uri", self.jwks_uri)
        if self.jwks_uri is not None:
            _check_secure("logout jwks_uri", self.jwks_uri)
        else:
            _check_secure("logout configuration_url", self.metadata_url)
        _check_algorithms("logout algorithms", self.algorithms)
        if self.max_age <= 0:
            raise SettingsError(f"logout max_age must be > 0, got {self.max_age}")

    @property
    def metadata_url(self) -> str:
        return self.configuration_url or well_known_url(self.issuer, "openid-configuration")


@dataclass(frozen=True, kw_only=True)
class MappingPolicy:
    """Choices in turning standard events into Revocast events (see receiver/README.md)."""

    version_claim: str = "ver"
    """Claim in a CAEP token-claims-change whose integer value becomes ``min_version``."""
    watermark_on_assurance_decrease: bool = True
    watermark_on_risk_increase: bool = True
    unblock_on_account_enabled: bool = True
    """Map RISC ``account-enabled`` to ``subject.unblocked``. SDKs keep a subject's latest
    block or unblock whatever its issuer, so this transmitter can lift a block an
    administrator or the identity service published: turn it off when it is not the only
    source of blocks."""
    email_is_subject: bool = False
    """Treat an ``email`` subject identifier as the token ``sub`` (only if your tokens do)."""
    email_ignores_case: bool = False
    """Your identity provider treats ``Alice@`` and ``alice@`` as one account: an unblock of an
    e-mail subject then also covers its all-lower-case spelling, as blocks always do. Off,
    it does not (it could lift the block of another mailbox where local parts keep case), so
    a block put on that spelling by a mixed-case ``account-disabled`` stays."""


@dataclass(frozen=True, kw_only=True)
class ReceiverSettings:
    """Everything the receiver needs besides the sink and the max token lifetime."""

    transmitter: TransmitterSettings | None = None
    poll: PollSettings | None = None
    logout: LogoutSettings | None = None
    mapping: MappingPolicy = field(default_factory=MappingPolicy)
    event_issuer: str = "revocast-receiver"
    """The ``issuer`` of the Revocast events we publish."""
    dedupe_path: Path = DEFAULT_DEDUPE_PATH
    dedupe_retention: float = 14 * 86_400.0
    jwks_max_age: float = 3600.0
    jwks_min_refresh_interval: float = 30.0
    """At most one key refetch per interval, however many unknown ``kid`` values arrive."""
    http_timeout: float = 10.0
    leeway: float = 60.0
    max_token_bytes: int = 64 * 1024
    max_aliases: int = DEFAULT_MAX_ALIASES
    """Most identifiers a SET's subject may list in ``aliases`` (all its lists together).
    Each alias gets its own rules, so a longer list is refused whole (``invalid_request``):
    publishing only some would leave the other aliases' tokens valid while the transmitter
    counts the SET delivered."""

    def __post_init__(self) -> None:
        if self.poll is not None and self.transmitter is None:
            raise SettingsError("poll delivery needs a transmitter (issuer, audience)")
        if not self.event_issuer or len(self.event_issuer) > 256:
            raise SettingsError("event_issuer must be 1-256 characters")
        for name in (
            "dedupe_retention",
            "jwks_max_age",
            "http_timeout",
            "max_token_bytes",
            "max_aliases",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("jwks_min_refresh_interval", "leeway"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.dedupe_retention <= self.leeway:
            raise SettingsError(
                f"dedupe_retention ({self.dedupe_retention!r}) must exceed leeway "
                f"({self.leeway!r}): older SETs are refused as possible replays"
            )

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_RECEIVER_", environ: Mapping[str, str] | None = None
    ) -> ReceiverSettings:
        """Read ``{prefix}*`` variables; see receiver/README.md for the full list.

        The transmitter is configured when ``{prefix}ISSUER`` is set, poll delivery when
        ``{prefix}POLL_URL`` is, back-channel logout when ``{prefix}LOGOUT_ISSUER`` is. A bad
        value raises :class:`~revocation_events.SettingsError` naming the variable.
        """
        env = os.environ if environ is None else environ
        p = prefix
        try:
            return cls(
                transmitter=_transmitter_from_env(env, p),
                poll=_poll_from_env(env, p),
                logout=_logout_from_env(env, p),
                mapping=MappingPolicy(
                    version_claim=env_str(env, f"{p}VERSION_CLAIM") or "ver",
                    watermark_on_assurance_decrease=_bool(
                        env, f"{p}WATERMARK_ON_ASSURANCE_DECREASE", True
                    ),
                    watermark_on_risk_increase=_bool(env, f"{p}WATERMARK_ON_RISK_INCREASE", True),
                    unblock_on_account_enabled=_bool(env, f"{p}UNBLOCK_ON_ACCOUNT_ENABLED", True),
                    email_is_subject=_bool(env, f"{p}EMAIL_IS_SUBJECT", False),
                    email_ignores_case=_bool(env, f"{p}EMAIL_IGNORES_CASE", False),
                ),
                event_issuer=env_str(env, f"{p}EVENT_ISSUER") or "revocast-receiver",
                dedupe_path=Path(env_str(env, f"{p}DEDUPE_PATH") or DEFAULT_DEDUPE_PATH),
                dedupe_retention=_float(env, f"{p}DEDUPE_RETENTION", 14 * 86_400.0),
                jwks_max_age=_float(env, f"{p}JWKS_MAX_AGE", 3600.0),
                jwks_min_refresh_interval=_float(env, f"{p}JWKS_MIN_REFRESH_INTERVAL", 30.0),
                http_timeout=_float(env, f"{p}HTTP_TIMEOUT", 10.0),
                leeway=_float(env, f"{p}LEEWAY", 60.0),
                max_token_bytes=_int(env, f"{p}MAX_TOKEN_BYTES", 64 * 1024),
                max_aliases=_int(env, f"{p}MAX_ALIASES", DEFAULT_MAX_ALIASES, minimum=1),
            )
        except SettingsError as exc:
            raise SettingsError(f"{exc} (from environment, prefix {prefix!r})") from None


def _list(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    value = env_str(env, name)
    if value is None:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env_bool(env, name)
    return default if value is None else value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    value = env_float(env, name)
    if value is not None and value < 0:
        raise SettingsError(f"{name} must be >= 0, got {value!r}")
    return default if value is None else value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None) -> int:
    value = env_int(env, name)
    if value is not None and minimum is not None and value < minimum:
        raise SettingsError(f"{name} must be >= {minimum}, got {value!r}")
    return default if value is None else value


@contextmanager
def _naming(variables: str) -> Iterator[None]:
    try:
        yield
    except SettingsError as exc:
        raise SettingsError(f"{variables}: {exc}") from None


def _transmitter_from_env(env: Mapping[str, str], p: str) -> TransmitterSettings | None:
    issuer = env_str(env, f"{p}ISSUER")
    if issuer is None:
        return None
    with _naming(f"{p}ISSUER/AUDIENCE/ALGORITHMS/PUSH_TOKENS/*_URL"):
        return TransmitterSettings(
            issuer=issuer,
            audience=_list(env, f"{p}AUDIENCE"),
            configuration_url=env_str(env, f"{p}CONFIGURATION_URL"),
            jwks_uri=env_str(env, f"{p}JWKS_URI"),
            algorithms=_list(env, f"{p}ALGORITHMS") or DEFAULT_ALGORITHMS,
            push_tokens=_list(env, f"{p}PUSH_TOKENS"),
            subject_issuers=_list(env, f"{p}SUBJECT_ISSUERS"),
            stream_id=env_str(env, f"{p}STREAM_ID"),
            receiver_token=env_str(env, f"{p}RECEIVER_TOKEN"),
        )


def _poll_from_env(env: Mapping[str, str], p: str) -> PollSettings | None:
    url = env_str(env, f"{p}POLL_URL")
    if url is None:
        return None
    with _naming(f"{p}POLL_*"):
        return PollSettings(
            url=url,
            max_events=_int(env, f"{p}POLL_MAX_EVENTS", 100),
            return_immediately=_bool(env, f"{p}POLL_RETURN_IMMEDIATELY", False),
            interval=_float(env, f"{p}POLL_INTERVAL", 5.0),
            max_backoff=_float(env, f"{p}POLL_MAX_BACKOFF", 300.0),
        )


def _logout_from_env(env: Mapping[str, str], p: str) -> LogoutSettings | None:
    issuer = env_str(env, f"{p}LOGOUT_ISSUER")
    if issuer is None:
        return None
    with _naming(f"{p}LOGOUT_*"):
        return LogoutSettings(
            issuer=issuer,
            audience=_list(env, f"{p}LOGOUT_AUDIENCE"),
            configuration_url=env_str(env, f"{p}LOGOUT_CONFIGURATION_URL"),
            jwks_uri=env_str(env, f"{p}LOGOUT_JWKS_URI"),
            algorithms=_list(env, f"{p}LOGOUT_ALGORITHMS") or DEFAULT_ALGORITHMS,
            max_age=_float(env, f"{p}LOGOUT_MAX_AGE", 300.0),
        )
