"""Identity service settings (``REVOCAST_IDP_*``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from identity_service._passwords import OWASP_SCRYPT, Scrypt
from revocation_events import SettingsError, env_float, env_int, env_str

__all__ = ["IdentitySettings"]


@dataclass(frozen=True, kw_only=True)
class IdentitySettings:
    issuer: str = "http://127.0.0.1:8000"
    """The ``iss`` claim of the tokens it mints (and the name it publishes revocations under)."""
    audience: str = "revocast-demo"
    db_path: Path = Path(".revocast") / "identity.sqlite3"
    access_token_ttl: float = 300.0
    refresh_token_ttl: float = 86_400.0
    admin_token: str = field(repr=False)
    """Bearer token for the /admin endpoints."""
    scrypt_n: int = OWASP_SCRYPT.n
    """scrypt cost of new password hashes (a power of two >= 1024); with ``scrypt_r`` and
    ``scrypt_p``, the OWASP minimum by default. A login re-hashes a password stored with other
    parameters. Memory per hash is about 128 * n * r bytes: 128 MiB, ~0.5 s of one core."""
    scrypt_r: int = OWASP_SCRYPT.r
    scrypt_p: int = OWASP_SCRYPT.p
    max_concurrent_hashes: int = 4
    """Password hashes computed at once, over all requests (login, password change, re-hash).
    Peak memory is about this times 128 * n * r bytes: 512 MiB at the default cost. Lower it
    when raising the cost; more than the CPU cores adds latency, not throughput."""
    hash_slot_wait: float = 1.0
    """Seconds a request waits for one of those; then 503 with Retry-After, and the attempt is
    not counted as a failed login. Each waiting request holds a worker thread."""
    login_failures_per_user: int = 5
    """Failed logins a username may have within ``login_failure_window``; then 429 until the
    oldest leaves it. Counted alike for names that do not exist. A success resets nothing."""
    login_failures_per_client: int = 50
    """The same per client address (an IPv6 /64). Behind a proxy, run uvicorn with
    ``--proxy-headers --forwarded-allow-ips`` so the address is the client's, not the proxy's."""
    login_failure_window: float = 900.0
    login_throttle_max_keys: int = 100_000
    """Usernames (and, separately, clients) tracked at once; the least recently used is
    dropped beyond it. Each costs an attacker one password hash here."""
    revocation_retry_interval: float = 5.0
    """Seconds between retries of revocations whose publication failed (the publisher raised):
    they stay in the database, and the served app publishes them again at this interval.
    Those a crash interrupted are published at startup, before the app serves."""

    def __post_init__(self) -> None:
        for name in ("access_token_ttl", "refresh_token_ttl"):
            ttl = getattr(self, name)
            # Whole seconds at least: ``exp`` is an integer, so 0.5 s would precede ``iat``;
            # and ``not >= 1`` also refuses nan (which passes ``<= 0``) and inf is refused
            # because a refresh token must expire.
            if not (1 <= ttl < math.inf):
                raise SettingsError(f"{name} must be a finite number of seconds >= 1, got {ttl}")
        if len(self.admin_token) < 16:
            raise SettingsError("admin_token must be at least 16 characters")
        for name in ("login_failures_per_user", "login_failures_per_client"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.login_throttle_max_keys < 1000:
            raise SettingsError(
                f"login_throttle_max_keys must be at least 1000, got {self.login_throttle_max_keys}"
            )
        if not (1 <= self.login_failure_window < math.inf):
            raise SettingsError(
                f"login_failure_window must be a finite number of seconds >= 1, "
                f"got {self.login_failure_window}"
            )
        if self.max_concurrent_hashes < 1:
            raise SettingsError(
                f"max_concurrent_hashes must be at least 1, got {self.max_concurrent_hashes}"
            )
        if not (0 <= self.hash_slot_wait <= 60):
            raise SettingsError(
                f"hash_slot_wait must be a number of seconds from 0 to 60, "
                f"got {self.hash_slot_wait}"
            )
        if not (0.01 <= self.revocation_retry_interval <= 3600):
            raise SettingsError(
                f"revocation_retry_interval must be a number of seconds from 0.01 to 3600, "
                f"got {self.revocation_retry_interval}"
            )
        try:
            self.scrypt  # noqa: B018 - validates the three parameters together
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    @property
    def scrypt(self) -> Scrypt:
        """The cost of new password hashes."""
        return Scrypt(n=self.scrypt_n, r=self.scrypt_r, p=self.scrypt_p)

    @classmethod
    def from_env(
        cls, prefix: str = "REVOCAST_IDP_", environ: Mapping[str, str] | None = None
    ) -> IdentitySettings:
        env = os.environ if environ is None else environ
        admin = env_str(env, f"{prefix}ADMIN_TOKEN")
        if admin is None:
            raise SettingsError(f"{prefix}ADMIN_TOKEN is not set (bearer token for /admin)")
        kwargs: dict[str, object] = {"admin_token": admin}
        for name in ("issuer", "audience"):
            value = env_str(env, f"{prefix}{name.upper()}")
            if value is not None:
                kwargs[name] = value
        db = env_str(env, f"{prefix}DB_PATH")
        if db is not None:
            kwargs["db_path"] = Path(db)
        for name in (
            "access_token_ttl",
            "refresh_token_ttl",
            "login_failure_window",
            "hash_slot_wait",
            "revocation_retry_interval",
        ):
            number = env_float(env, f"{prefix}{name.upper()}")
            if number is not None:
                kwargs[name] = number
        for name in (
            "scrypt_n",
            "scrypt_r",
            "scrypt_p",
            "max_concurrent_hashes",
            "login_failures_per_user",
            "login_failures_per_client",
            "login_throttle_max_keys",
        ):
            integer = env_int(env, f"{prefix}{name.upper()}")
            if integer is not None:
                kwargs[name] = integer
        try:
            return cls(**kwargs)  # type: ignore[arg-type]
        except SettingsError as exc:
            raise SettingsError(f"{exc} (from environment, prefix {prefix!r})") from None
