"""Token verification: PyJWT with pinned algorithms, per-key algorithm families, strict
claim types and a size bound. The revocation check itself lives in :class:`RevocationState`.

Keys are either static (``jwt_keys``) or fetched from a JWKS URL. With a JWKS URL the
request path never fetches: a background thread loads the key set at start and every
``jwks_refresh_interval``; a token with an unknown ``kid`` is refused and wakes the thread,
which refetches at most once per ``jwks_min_refresh_interval``. A newly rotated key is thus
accepted within one round trip, and a flood of made-up kids costs one fetch per interval.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from consumer_sdk._errors import RevocastTokenError
from consumer_sdk._settings import ConsumerSettings, KeyMaterial
from revocation_events import SettingsError

__all__ = ["JwksKeys", "TokenVerifier"]

_log = logging.getLogger("consumer_sdk")

_FAMILIES: Mapping[str, frozenset[str]] = {
    "oct": frozenset({"HS256", "HS384", "HS512"}),
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES256K", "ES384", "ES512"}),
    "OKP": frozenset({"EdDSA"}),
}

# kid -> (key object for PyJWT, algorithms this key may verify)
KeyEntry = tuple[Any, list[str]]


def _family_of(key: Any) -> str:
    if isinstance(key, bytes):
        return "oct"
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "OKP"
    raise SettingsError(f"unsupported key type {type(key).__name__} (public keys only)")


def _load_material(kid: str, material: KeyMaterial) -> Any:
    raw = material.encode() if isinstance(material, str) else material
    stripped = raw.strip()
    if stripped.startswith(b"-----BEGIN"):
        if b"PRIVATE" in stripped.split(b"\n", 1)[0]:
            raise SettingsError(f"jwt_keys[{kid!r}]: give the public key, not the private key")
        try:
            return load_pem_public_key(stripped)
        except ValueError:
            raise SettingsError(f"jwt_keys[{kid!r}]: not a valid PEM public key") from None
    if isinstance(material, str) and stripped.startswith(b"{"):
        try:
            return jwt.PyJWK.from_json(material).key
        except (jwt.PyJWKError, ValueError) as exc:
            raise SettingsError(f"jwt_keys[{kid!r}]: not a valid JWK ({exc})") from None
    return raw


def _entry(kid: str, key: Any, algorithms: tuple[str, ...]) -> KeyEntry:
    family = _FAMILIES[_family_of(key)]
    allowed = [a for a in algorithms if a in family]
    if not allowed:
        raise SettingsError(
            f"key {kid!r} can verify none of the pinned algorithms {list(algorithms)}"
        )
    return key, allowed


def _b64decode(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def header_kid(token: bytes) -> str | None:
    """The ``kid`` of a compact JWS header, without verifying anything (~3x cheaper than
    :func:`jwt.get_unverified_header`). Raises :class:`jwt.DecodeError` on garbage."""
    try:
        header = json.loads(_b64decode(token[: token.index(b".")]))
    except (ValueError, binascii.Error):
        raise jwt.DecodeError("invalid token header") from None
    if not isinstance(header, dict):
        raise jwt.DecodeError("invalid token header")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise jwt.DecodeError("kid must be a string")
    return kid


class JwksKeys:
    """Keys from a JWKS URL, refreshed off the request path by one daemon thread."""

    def __init__(self, settings: ConsumerSettings) -> None:
        assert settings.jwks_url is not None
        self._settings = settings
        self._client = jwt.PyJWKClient(settings.jwks_url, cache_jwk_set=False)
        self.keys: dict[str, KeyEntry] = {}
        self.loaded = threading.Event()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        # Fresh events: after a fork, the parent's may hold locks no thread will release.
        loaded = self.loaded.is_set()
        self.loaded = threading.Event()
        if loaded:
            self.loaded.set()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="revocast-jwks", daemon=True)
        self._thread.start()

    def close(self, timeout: float) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def request_refresh(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        s = self._settings
        while not self._stop.is_set():
            try:
                self.refresh()
            except (jwt.PyJWKClientError, SettingsError) as exc:
                _log.warning("JWKS refresh from %s failed: %s", s.jwks_url, exc)
            self._wake.clear()
            self._stop.wait(s.jwks_min_refresh_interval)
            self._wake.wait(max(0.0, s.jwks_refresh_interval - s.jwks_min_refresh_interval))

    def refresh(self) -> None:
        jwk_set = self._client.get_jwk_set(refresh=True)
        keys: dict[str, KeyEntry] = {}
        for jwk in jwk_set.keys:
            if jwk.key_id is None:
                continue
            family = _FAMILIES.get(jwk.key_type or "", frozenset())
            allowed = [a for a in self._settings.algorithms if a in family]
            if allowed:
                keys[jwk.key_id] = (jwk.key, allowed)
        self.keys = keys
        self.loaded.set()


class TokenVerifier:
    """Decodes and validates a token's signature and claims (not its revocation)."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self._max_bytes = settings.max_token_bytes
        self._static: dict[str, KeyEntry] = {
            kid: _entry(kid, _load_material(kid, m), settings.algorithms)
            for kid, m in settings.jwt_keys.items()
        }
        self._only: KeyEntry | None = (
            next(iter(self._static.values())) if len(self._static) == 1 else None
        )
        self.jwks = JwksKeys(settings) if settings.jwks_url else None
        require = ["exp", "iat"] + (["sub"] if settings.require_sub else [])
        self._jwt = jwt.PyJWT({"require": require})
        self._issuer = settings.issuer
        audience = settings.audience
        self._audience: str | list[str] | None = (
            None if not audience else audience[0] if len(audience) == 1 else list(audience)
        )
        self._leeway = settings.leeway

    def decode(self, token: str | bytes) -> tuple[dict[str, Any], str | None]:
        """Return the claims and the header's ``kid``; raise a :class:`jwt.InvalidTokenError`."""
        raw = token.encode() if isinstance(token, str) else token
        if len(raw) > self._max_bytes:
            raise RevocastTokenError(f"token of {len(raw)} bytes exceeds {self._max_bytes}")
        entry = self._only
        if entry is None:
            entry = self._select(header_kid(raw))
        decoded = self._jwt.decode_complete(
            raw,
            entry[0],
            algorithms=entry[1],
            audience=self._audience,
            issuer=self._issuer,
            leeway=self._leeway,
        )
        claims: dict[str, Any] = decoded["payload"]
        # PyJWT int()-converts these, so "exp": "9999999999" would pass; numbers only.
        for name in ("exp", "iat", "nbf"):
            value = claims.get(name)
            if value is not None and type(value) is not int and type(value) is not float:
                raise RevocastTokenError(f"claim {name!r} must be a number")
        kid = decoded["header"].get("kid")
        return claims, kid if type(kid) is str else None

    def _select(self, kid: str | None) -> KeyEntry:
        if kid is None:
            raise RevocastTokenError("token has no kid and several keys are configured")
        if self.jwks is not None:
            entry = self.jwks.keys.get(kid)
            if entry is None:
                self.jwks.request_refresh()
        else:
            entry = self._static.get(kid)
        if entry is None:
            raise RevocastTokenError(f"unknown key id {kid[:64]!r}")
        return entry
