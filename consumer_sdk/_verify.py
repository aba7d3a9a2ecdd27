"""Token verification: PyJWT with pinned algorithms, per-key algorithm families, strict
claim types, a size bound and a lifetime bound. The revocation check itself lives in
:class:`RevocationState`.

The lifetime bound (``exp - iat <= max_token_lifetime``) is what the state's time-limited
rules rely on: a ``sid``, subject, version or global rule is kept ``max_token_lifetime`` past
the moment it covers, and a log replay reaches that far back, because every token issued
before that moment has expired by then. A longer-lived token would be accepted again once
the rule is forgotten, so it is refused here instead.

Keys are either static (``jwt_keys``) or fetched from a JWKS URL. With a JWKS URL the
request path never fetches: a background thread loads the key set at start and every
``jwks_refresh_interval``; a token with an unknown ``kid`` is refused and wakes the thread,
which refetches at most once per ``jwks_min_refresh_interval``. A newly rotated key is thus
accepted within one round trip, and a flood of made-up kids costs one fetch per interval.

:class:`VerifyCache` (opt-in, ``verify_cache_size``) remembers verified tokens so a repeated
token skips the signature check; its docstring gives the security reasoning.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cachetools import TLRUCache
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_public_key,
)
from jwt.algorithms import get_default_algorithms

from consumer_sdk._errors import RevocastTokenError, StateUnavailableError
from consumer_sdk._settings import ConsumerSettings, KeyMaterial
from revocation_events import SettingsError

__all__ = ["JwksKeys", "TokenVerifier", "VerifyCache", "token_bytes"]

_log = logging.getLogger("consumer_sdk")

_FAMILIES: Mapping[str, frozenset[str]] = {
    "oct": frozenset({"HS256", "HS384", "HS512"}),
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES256K", "ES384", "ES512", "ES521"}),
    "OKP": frozenset({"EdDSA"}),
}
_ALGORITHMS = get_default_algorithms()

# kid -> (key object for PyJWT, algorithms this key may verify)
KeyEntry = tuple[Any, list[str]]

_NUMBER = (int, float)  # exact types: bool and numeric strings are refused
_HEADER_KIDS_MAX = 256
"""Header segments whose ``kid`` a verifier remembers (see :meth:`TokenVerifier._key_for`)."""


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


def _load_material(kid: str, material: KeyMaterial) -> tuple[Any, str | None]:
    """The key object for PyJWT, and the algorithm a JWK declares (``alg``), if any."""
    raw = material.encode() if isinstance(material, str) else material
    stripped = raw.strip()
    if stripped.startswith(b"-----BEGIN"):
        if b"PRIVATE" in stripped.split(b"\n", 1)[0]:
            raise SettingsError(f"jwt_keys[{kid!r}]: give the public key, not the private key")
        try:
            return load_pem_public_key(stripped), None
        except ValueError:
            raise SettingsError(f"jwt_keys[{kid!r}]: not a valid PEM public key") from None
    if isinstance(material, str) and stripped.startswith(b"{"):
        try:
            data = json.loads(material)
            key = jwt.PyJWK(data).key
        except Exception:
            # Not ``({exc})``: PyJWT's messages quote the whole JWK, an oct key's secret
            # included, and a bad member raises InvalidKeyError or KeyError, not PyJWKError.
            raise SettingsError(f"jwt_keys[{kid!r}]: not a valid JWK (value not shown)") from None
        if not _for_signatures(data):
            raise SettingsError(f"jwt_keys[{kid!r}]: the JWK's use is not 'sig'")
        return key, _declared(data)
    return raw, None


def _for_signatures(jwk: Mapping[str, Any]) -> bool:
    """Whether a JWK may verify signatures: ``use`` absent or ``sig`` (RFC 7517 4.2)."""
    return bool(jwk.get("use", "sig") == "sig")


def _declared(jwk: Mapping[str, Any]) -> str | None:
    """The one algorithm a JWK is for (``alg``, RFC 7517 4.4), or None when it names none."""
    alg = jwk.get("alg")
    return alg if isinstance(alg, str) else None


def _allowed(
    key: Any, family: str, algorithms: tuple[str, ...], declared: str | None = None
) -> tuple[list[str], str]:
    """The pinned algorithms ``key`` can verify, and why PyJWT refused it for the others.
    A JWK that declares its algorithm verifies that one only (RFC 8725 3.1).

    The key type's family is not enough: PyJWT refuses a P-256 key for ES384 and an empty
    or PEM-shaped secret for HS256 with :class:`jwt.InvalidKeyError`, which is not an
    :class:`jwt.InvalidTokenError`. Left in, a token whose header names such an algorithm
    made ``verify`` raise that (a 500 from every adapter) instead of refusing the token."""
    allowed: list[str] = []
    why = ""
    for alg in algorithms:
        if declared is not None and alg != declared:
            why = f"the JWK is for {declared[:16]} only"
            continue
        if alg in _FAMILIES.get(family, ()):
            try:
                _ALGORITHMS[alg].prepare_key(key)
            except jwt.InvalidKeyError as exc:  # its messages never echo key material
                why = str(exc)
                continue
            allowed.append(alg)
    return allowed, why


def _entry(kid: str, material: tuple[Any, str | None], algorithms: tuple[str, ...]) -> KeyEntry:
    key, declared = material
    allowed, why = _allowed(key, _family_of(key), algorithms, declared)
    if not allowed:
        raise SettingsError(
            f"key {kid!r} can verify none of the pinned algorithms {list(algorithms)}"
            + (f" ({why})" if why else "")
        )
    return key, allowed


def _key_identity(key: Any) -> bytes:
    """Bytes that differ whenever the verification key differs (for change detection)."""
    if isinstance(key, bytes):
        return key
    try:
        public = key.public_key() if hasattr(key, "private_bytes") else key
        return bytes(public.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    except Exception:  # an unknown key object: treat it as new every time (clears caches)
        return id(key).to_bytes(8, "little") + os.urandom(8)


def token_bytes(token: str | bytes) -> bytes:
    """``token`` as UTF-8 bytes, or a :class:`jwt.DecodeError` for anything else: a value of
    another type (None, a number, a bytearray…) or text that cannot be encoded (a lone
    surrogate). Raising TypeError or UnicodeEncodeError instead made adapters answer 500."""
    if isinstance(token, str):
        try:
            return token.encode()
        except UnicodeEncodeError:
            raise jwt.DecodeError("token is not valid UTF-8 text") from None
    if isinstance(token, bytes):
        return token
    raise jwt.DecodeError(f"token must be str or bytes, not {type(token).__name__}")


def _b64decode(segment: bytes) -> bytes:
    return base64.urlsafe_b64decode(segment + b"=" * (-len(segment) % 4))


def header_kid(token: bytes) -> str | None:
    """The ``kid`` of a compact JWS header, without verifying anything (~3x cheaper than
    :func:`jwt.get_unverified_header`). Raises :class:`jwt.DecodeError` on garbage."""
    try:
        header = json.loads(_b64decode(token[: token.index(b".")]))
    except (ValueError, binascii.Error, RecursionError):  # deeply nested JSON: RecursionError
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
        self._identity: dict[str, tuple[tuple[str, ...], bytes]] | None = None
        self._on_change: list[Callable[[], None]] = []
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

    def on_change(self, fn: Callable[[], None]) -> None:
        """Call ``fn`` (on the refreshing thread) after the key set has changed."""
        self._on_change.append(fn)

    def _run(self) -> None:
        s = self._settings
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # keep the old keys and this thread alive; retry later
                # (an empty or non-JSON key set raises PyJWKSetError / ValueError, not only
                # PyJWKClientError; any of them used to end the thread, and with it rotation)
                _log.warning(
                    "JWKS refresh from %s failed: %s: %s", s.jwks_url, type(exc).__name__, exc
                )
            self._wake.clear()
            self._stop.wait(s.jwks_min_refresh_interval)
            self._wake.wait(max(0.0, s.jwks_refresh_interval - s.jwks_min_refresh_interval))

    def refresh(self) -> None:
        data = self._client.fetch_data()
        listed = data.get("keys") if isinstance(data, dict) else None
        if not isinstance(listed, list) or not listed:
            raise jwt.PyJWKSetError("The JWK Set did not contain any keys")
        keys: dict[str, KeyEntry] = {}
        usable = 0
        for raw in listed:
            if not isinstance(raw, dict):
                continue
            try:
                jwk = jwt.PyJWK(raw)
            except (jwt.PyJWTError, KeyError, TypeError, ValueError):
                continue  # an unsupported or broken key is skipped, as PyJWKSet does
            usable += 1
            if jwk.key_id is None or not _for_signatures(raw):
                continue
            allowed, _ = _allowed(
                jwk.key, jwk.key_type or "", self._settings.algorithms, _declared(raw)
            )
            if allowed:
                keys[jwk.key_id] = (jwk.key, allowed)
        if not usable:
            raise jwt.PyJWKSetError("The JWK Set did not contain any usable keys")
        identity = {kid: (tuple(algs), _key_identity(key)) for kid, (key, algs) in keys.items()}
        if identity != self._identity:
            # Swap the keys first, then tell the listeners: a request that read the old keys
            # read them before the change, which is what VerifyCache's generation relies on.
            self.keys = keys
            self._identity = identity
            for fn in self._on_change:
                fn()
        self.loaded.set()


class TokenVerifier:
    """Decodes and validates a token's signature and claims (not its revocation)."""

    def __init__(
        self, settings: ConsumerSettings, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._max_bytes = settings.max_token_bytes
        lifetime = settings.max_token_lifetime
        # An int when whole: int - int > int is the cheaper comparison on the request path.
        self._max_lifetime: float = int(lifetime) if lifetime == int(lifetime) else lifetime
        self._static: dict[str, KeyEntry] = {
            kid: _entry(kid, _load_material(kid, m), settings.algorithms)
            for kid, m in settings.jwt_keys.items()
        }
        self._only: KeyEntry | None = (
            next(iter(self._static.values())) if len(self._static) == 1 else None
        )
        self.only_kid: str | None = next(iter(self._static)) if self._only else None
        """The configured ``kid`` of a single static key, which verifies tokens whatever
        their ``kid`` header says: revoking it must refuse all of them (see ``verify``)."""
        self.jwks = JwksKeys(settings) if settings.jwks_url else None
        self._header_kids: dict[bytes, str] = {}
        require = ["exp", "iat"] + (["sub"] if settings.require_sub else [])
        self._jwt = jwt.PyJWT({"require": require})
        self._decode_complete = self._jwt.decode_complete
        self._issuer = settings.issuer
        audience = settings.audience
        self._audience: str | list[str] | None = (
            None if not audience else audience[0] if len(audience) == 1 else list(audience)
        )
        self._leeway = settings.leeway
        # Nothing to pass beyond PyJWT's defaults (audience/issuer None, leeway 0): each
        # keyword argument costs ~15 ns on the request path.
        self._plain = self._audience is None and self._issuer is None and not self._leeway
        self.cache: VerifyCache | None = None
        if settings.verify_cache_size:
            self.cache = VerifyCache(
                settings.verify_cache_size,
                clock=clock,
                leeway=settings.leeway,
                max_bytes=settings.max_token_bytes,
            )
            if self.jwks is not None:
                self.jwks.on_change(self.cache.clear)

    def decode(self, token: str | bytes) -> tuple[dict[str, Any], str | None]:
        """Return the claims and the header's ``kid``; raise a :class:`jwt.InvalidTokenError`."""
        try:  # inline for the usual str and bytes (a call costs ~0.1 µs); the rest raises
            raw = (
                token
                if type(token) is bytes
                else token.encode()
                if type(token) is str
                else token_bytes(token)
            )
        except UnicodeEncodeError:
            raw = token_bytes(token)  # a DecodeError
        if len(raw) > self._max_bytes:
            raise RevocastTokenError(f"token of {len(raw)} bytes exceeds {self._max_bytes}")
        key, algorithms = self._only or self._key_for(raw)
        if self._plain:
            decoded = self._decode_complete(raw, key, algorithms=algorithms)
        else:
            decoded = self._decode_complete(
                raw,
                key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
            )
        claims: dict[str, Any] = decoded["payload"]
        # PyJWT int()-converts these, so "exp": "9999999999" would pass; numbers only.
        # Fast path for the usual integer exp and iat (both required, so present) and no nbf.
        exp, iat = claims["exp"], claims["iat"]
        if type(exp) is not int or type(iat) is not int or "nbf" in claims:
            _check_numeric(claims)
        if exp - iat > self._max_lifetime:
            # Not the difference itself: an integer exp of any size passes PyJWT, and
            # formatting it as a float would raise OverflowError.
            raise RevocastTokenError(
                f"token lifetime exp - iat exceeds max_token_lifetime ({self._max_lifetime:g}s)"
            )
        # PyJWT refuses a ``sub`` or ``jti`` that is not a string; no event can name a ``sid``
        # of another type either, so its session's logout would never reach the token.
        if "sid" in claims and type(claims["sid"]) is not str:
            raise RevocastTokenError("claim 'sid' must be a string")
        kid = decoded["header"].get("kid")
        return claims, kid if type(kid) is str else None

    def _key_for(self, raw: bytes) -> KeyEntry:
        """The key entry for the ``kid`` in ``raw``'s header, which is parsed once per distinct
        header segment: every token one key signs starts with the same few, and parsing one
        (base64 and JSON) costs several µs. The kid is a function of the segment's bytes, so
        remembering it changes no answer; the key is still looked up by kid every time, so
        a removed key is refused at once. Only segments whose kid selected a key are kept,
        at most :data:`_HEADER_KIDS_MAX` (all forgotten when full: a flood of made-up
        headers costs each of them the parse, as without this, and nothing else)."""
        end = raw.find(b".")
        header = raw[:end] if end > 0 else b""
        kid = self._header_kids.get(header) if header else None
        if kid is not None:
            return self._select(kid)
        kid = header_kid(raw)
        entry = self._select(kid)  # raises for a kid that selects no key
        if header and kid is not None:
            kids = self._header_kids
            if len(kids) >= _HEADER_KIDS_MAX:
                kids.clear()
            kids[header] = kid
        return entry

    def _select(self, kid: str | None) -> KeyEntry:
        if kid is None:
            raise RevocastTokenError("token has no kid and several keys are configured")
        if self.jwks is not None:
            entry = self.jwks.keys.get(kid)
            if entry is None:
                self.jwks.request_refresh()
                if not self.jwks.loaded.is_set():
                    # Not a bad token: we cannot tell yet (503, retry), not 401 (drop it).
                    raise StateUnavailableError("signing keys not loaded yet (JWKS)")
        else:
            entry = self._static.get(kid)
        if entry is None:
            raise RevocastTokenError(f"unknown key id {kid[:64]!r}")
        return entry


def _check_numeric(claims: Mapping[str, Any]) -> None:
    for name in ("exp", "iat", "nbf"):
        if (name != "nbf" or name in claims) and type(claims.get(name)) not in _NUMBER:
            raise RevocastTokenError(f"claim {name!r} must be a number")


def _thaw(value: Any) -> Any:
    """A deep copy of JSON data (dicts, lists and immutable scalars), ~10x cheaper than
    :func:`copy.deepcopy`."""
    kind = type(value)
    if kind is dict:
        return {k: _thaw(v) for k, v in value.items()}
    if kind is list:
        return [_thaw(v) for v in value]
    return value


# (claims, keys whose values are dicts or lists, kid, int(iat), int(nbf) or None, int(exp))
_Entry = tuple[dict[str, Any], tuple[str, ...], str | None, int, int | None, int]


class VerifyCache:
    """Opt-in cache of verified tokens (``verify_cache_size``), as Envoy's ``jwt_authn``
    ``jwt_cache_config``: a repeated token skips the signature check and PyJWT's decoding.

    Why a hit is as safe as a full verification:

    - **The key is the exact token bytes.** Signature, pinned algorithm, key selection by
      ``kid``, required claims, ``iss``/``aud``, numeric ``exp``/``iat``/``nbf``, a string
      ``sid``, the size bound and the lifetime bound are all functions of those bytes, the
      (frozen) settings and the key set, so they are checked once, on the miss that fills
      the entry. A token differing in one byte, including its signature, is a different key
      and gets the full verification.
    - **Everything that can change is checked on every hit.** ``iat``, ``nbf`` and ``exp``
      are re-checked against the SDK's clock with the same leeway, in PyJWT's order, with
      PyJWT's ``int()`` truncation and PyJWT's exceptions and messages
      (:class:`jwt.ExpiredSignatureError` for an expired token, hit or miss). The revocation
      state and the fail-closed status are checked by :meth:`Revocast.verify` exactly as
      for an uncached token (the cache only replaces the decoding step), which includes
      ``key.revoked`` for the token's ``kid``.
    - **The key set.** Static keys never change. When a JWKS refresh changes the key set,
      the cache is cleared, so a token signed with a removed (or replaced) key stops
      working at once. A miss that verified with the old keys while the refresh ran does
      not re-insert its token: inserts carry the :attr:`generation` read before decoding,
      and :meth:`clear` bumps it under the same lock.
    - **Only successes are cached.** A token that fails anything (signature, claims,
      revocation, fail-closed status) is never inserted, so the cache cannot turn a refusal
      into an acceptance, and a forged token pays the full verification every time.
    - **Bounded.** At most ``maxsize`` entries, least recently used evicted first
      (:class:`cachetools.TLRUCache` under one lock), and each entry is dropped at its
      ``exp`` + leeway. Only tokens the identity provider signed can enter, so the memory
      (about size x (token length + ~1 KB)) is bounded by the live token population.
    - **Callers get their own copy** of the claims, nested lists and objects included, so
      code that mutates the returned dict cannot change what the next hit returns.
    - A hit is faster than a miss, which tells only someone who already holds the exact
      token that it was used recently. Keys are bytes, hashed with the per-process SipHash.
    - After ``os.fork()`` the child starts with an empty cache and a fresh lock.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        clock: Callable[[], float],
        leeway: float = 0.0,
        max_bytes: int = 8 * 1024,
    ) -> None:
        self.maxsize = maxsize
        self._clock = clock
        self._leeway = leeway
        self._max_bytes = max_bytes
        self.generation = 0
        """Bumped by :meth:`clear`; :meth:`put` ignores results decoded before a clear."""
        self.hits = 0
        self.misses = 0
        self._new()
        _caches.add(self)

    def _new(self) -> None:
        self._lock = threading.Lock()
        self._entries: TLRUCache[bytes, _Entry] = TLRUCache(
            self.maxsize, ttu=self._until, timer=self._clock
        )

    def _until(self, _key: bytes, entry: _Entry, _now: float) -> float:
        return entry[5] + self._leeway

    def get(self, raw: bytes) -> tuple[dict[str, Any], str | None] | None:
        """The claims and ``kid`` of a cached token, or None (then verify it in full).
        Raises PyJWT's own errors when the token is expired or not yet valid."""
        if type(raw) is not bytes or len(raw) > self._max_bytes:
            return None  # the full verification refuses it, with the usual error
        with self._lock:
            try:
                entry = self._entries[raw]
            except KeyError:
                self.misses += 1
                return None
            self.hits += 1
        claims, nested, kid, iat, nbf, exp = entry
        now = self._clock()
        leeway = self._leeway
        # The order and messages of PyJWT's _validate_iat, _validate_nbf, _validate_exp.
        if iat > now + leeway:
            raise jwt.ImmatureSignatureError("The token is not yet valid (iat)")
        if nbf is not None and nbf > now + leeway:
            raise jwt.ImmatureSignatureError("The token is not yet valid (nbf)")
        if exp <= now - leeway:
            raise jwt.ExpiredSignatureError("Signature has expired")
        copy = dict(claims)
        for name in nested:
            copy[name] = _thaw(claims[name])
        return copy, kid

    def put(self, raw: bytes, claims: Mapping[str, Any], kid: str | None, generation: int) -> None:
        """Remember a token that passed the whole verification. ``generation`` is
        :attr:`generation` as read before the token was decoded."""
        nbf = claims.get("nbf")
        entry: _Entry = (
            {k: _thaw(v) for k, v in claims.items()},
            tuple(k for k, v in claims.items() if type(v) is dict or type(v) is list),
            kid,
            int(claims["iat"]),
            None if nbf is None else int(nbf),
            int(claims["exp"]),
        )
        with self._lock:
            if generation == self.generation:
                self._entries[raw] = entry  # not stored if already past exp + leeway

    def clear(self) -> None:
        """Forget every token (the key set changed)."""
        with self._lock:
            self.generation += 1
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)

    def _after_fork_in_child(self) -> None:
        self.generation += 1
        self._new()


_caches: weakref.WeakSet[VerifyCache] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for cache in list(_caches):
        cache._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
