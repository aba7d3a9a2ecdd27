"""Verification of Security Event Tokens (RFC 8417, SSF 1.0) and OIDC back-channel logout
tokens: signature with a pinned algorithm, explicit ``typ``, issuer, audience and the claims
each profile requires. Only PyJWT's JWS layer is used; every claim check is ours, against an
injected clock, so each failure maps to one RFC 8935 error code.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import jwt
from jwt import PyJWK
from jwt.exceptions import InvalidSignatureError, PyJWTError

from receiver._errors import SetRejected
from receiver._keys import KeySource
from receiver._settings import LogoutSettings, TransmitterSettings

__all__ = ["LOGOUT_EVENT", "LogoutVerifier", "SetVerifier", "VerifiedLogout", "VerifiedSet"]

_S = TypeVar("_S", TransmitterSettings, LogoutSettings)

LOGOUT_EVENT = "http://schemas.openid.net/event/backchannel-logout"
_SET_TYPES = frozenset({"secevent+jwt", "application/secevent+jwt"})
_LOGOUT_TYPES = frozenset({"logout+jwt", "application/logout+jwt"})
_MAX_ID = 256


@dataclass(frozen=True, slots=True)
class VerifiedSet:
    """An authentic SET carrying exactly one event."""

    jti: str
    issuer: str
    issued_at: datetime
    event_type: str
    payload: Mapping[str, Any]
    subject: Mapping[str, Any] | None
    """``sub_id`` (SSF 1.0), else the event's own ``subject`` member (earlier drafts, RISC)."""
    event_time: datetime | None
    """The event's ``event_timestamp``, else the SET's ``toe``."""


@dataclass(frozen=True, slots=True)
class VerifiedLogout:
    """An authentic back-channel logout token."""

    jti: str
    issuer: str
    issued_at: datetime
    sid: str | None
    sub: str | None


class _JwsVerifier(Generic[_S]):
    """What both verifiers hold: one sender's settings, its keys, the clock and the bounds."""

    def __init__(
        self,
        *,
        settings: _S,
        keys: KeySource,
        clock: Callable[[], datetime],
        leeway: float = 60.0,
        max_bytes: int = 64 * 1024,
        max_age: float = math.inf,
    ) -> None:
        self._settings: _S = settings
        self._keys = keys
        self._clock = clock
        self._leeway = leeway
        self._max_bytes = max_bytes
        self._max_age = max_age


class SetVerifier(_JwsVerifier[TransmitterSettings]):
    """Verifies SETs from one transmitter."""

    def verify(self, token: str) -> VerifiedSet:
        """Return the SET's contents or raise :class:`SetRejected`."""
        s = self._settings
        claims = _verify_jws(token, _SET_TYPES, s.algorithms, self._keys, self._max_bytes)
        _check_issuer_audience(claims, s.issuer, s.audience)
        jti = _identifier(claims, "jti")
        issued_at = _required_time(claims, "iat")
        age = (self._clock() - issued_at).total_seconds()
        if -age > self._leeway:
            raise SetRejected("invalid_request", "iat is in the future")
        if age > self._max_age:
            # Its jti may already be forgotten by the dedupe store: it cannot be told from a
            # replay, which could, for instance, lift a block published since.
            raise SetRejected("invalid_request", "SET is older than the replay window")
        events = claims.get("events")
        if not isinstance(events, dict) or len(events) != 1:
            raise SetRejected("invalid_request", "a SET must carry exactly one event")
        ((event_type, payload),) = events.items()
        if not isinstance(payload, dict):
            raise SetRejected("invalid_request", "the event payload must be a JSON object")
        subject = claims.get("sub_id", payload.get("subject"))
        if subject is not None and not isinstance(subject, dict):
            raise SetRejected("invalid_request", "the subject must be a JSON object")
        event_time = _time(payload, "event_timestamp") or _time(claims, "toe")
        return VerifiedSet(
            jti=jti,
            issuer=s.issuer,
            issued_at=issued_at,
            event_type=event_type,
            payload=payload,
            subject=subject,
            event_time=event_time,
        )


class LogoutVerifier(_JwsVerifier[LogoutSettings]):
    """Verifies back-channel logout tokens (OIDC Back-Channel Logout 1.0, section 2.6)."""

    def verify(self, token: str) -> VerifiedLogout:
        s = self._settings
        claims = _verify_jws(token, _LOGOUT_TYPES, s.algorithms, self._keys, self._max_bytes)
        _check_issuer_audience(claims, s.issuer, s.audience)
        now = self._clock()
        issued_at = _required_time(claims, "iat")
        expires = _required_time(claims, "exp")
        if (issued_at - now).total_seconds() > self._leeway:
            raise SetRejected("invalid_request", "iat is in the future")
        if (now - issued_at).total_seconds() > s.max_age + self._leeway:
            raise SetRejected("invalid_request", "logout token is too old")
        if (now - expires).total_seconds() > self._leeway:
            raise SetRejected("invalid_request", "logout token has expired")
        if "nonce" in claims:
            # A logout token must never be usable as an ID token and vice versa.
            raise SetRejected("invalid_request", "logout token must not contain nonce")
        events = claims.get("events")
        if not isinstance(events, dict) or not isinstance(events.get(LOGOUT_EVENT), dict):
            raise SetRejected("invalid_request", "events claim lacks the back-channel logout event")
        sid = _optional_identifier(claims, "sid")
        sub = _optional_identifier(claims, "sub")
        if sid is None and sub is None:
            raise SetRejected("invalid_request", "logout token needs sid or sub")
        return VerifiedLogout(
            jti=_identifier(claims, "jti"),
            issuer=s.issuer,
            issued_at=issued_at,
            sid=sid,
            sub=sub,
        )


def _verify_jws(
    token: str,
    types: frozenset[str],
    algorithms: tuple[str, ...],
    keys: KeySource,
    max_bytes: int,
) -> dict[str, Any]:
    if len(token) > max_bytes:
        raise SetRejected("invalid_request", f"token larger than {max_bytes} bytes")
    if token.count(".") != 2:
        raise SetRejected("invalid_request", "not a signed JWT (JWS compact serialization)")
    try:
        header = jwt.get_unverified_header(token)
    except PyJWTError:
        raise SetRejected("invalid_request", "malformed JOSE header") from None
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in types:
        raise SetRejected("invalid_request", f"typ must be {min(types)}")
    if "crit" in header or "b64" in header:
        raise SetRejected("invalid_request", "unsupported critical JOSE header")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise SetRejected("invalid_key", f"algorithm {str(alg)[:16]!r} is not accepted")
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise SetRejected("invalid_request", "kid must be a string")
    # The payload is parsed unverified only if the kid is unknown (see KeySource.keys).
    candidates = keys.keys(kid, alg, issued_at=lambda: _unverified_iat(token))
    raw = _verified_payload(token, candidates, alg)
    try:
        claims = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        # RecursionError: nesting deeper than the interpreter's limit (PyJWT guards the header).
        raise SetRejected("invalid_request", "claims are not JSON") from None
    if not isinstance(claims, dict):
        raise SetRejected("invalid_request", "claims are not a JSON object")
    return claims


def _verified_payload(token: str, candidates: tuple[PyJWK, ...], alg: str) -> bytes:
    """The payload, if one of the keys (all the sender's, sharing the token's ``kid``)
    verifies the signature."""
    jws = jwt.api_jws.PyJWS()
    for key in candidates:
        try:
            payload: bytes = jws.decode_complete(token, key=key, algorithms=[alg])["payload"]
        except InvalidSignatureError:
            continue
        except PyJWTError:
            raise SetRejected("invalid_request", "malformed JWS") from None
        return payload
    raise SetRejected("authentication_failed", "signature does not verify")


def _unverified_iat(token: str) -> float | None:
    """The ``iat`` before the signature is checked: it only tells an unknown key that may be
    newer than ours (retry later) from one that is not (refuse)."""
    try:
        claims = json.loads(base64.urlsafe_b64decode(_padded(token.split(".")[1])))
    except (ValueError, RecursionError):  # binascii.Error is a ValueError
        return None
    value = claims.get("iat") if isinstance(claims, dict) else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond the float range
        return None


def _padded(segment: str) -> str:
    return segment + "=" * (-len(segment) % 4)


def _check_issuer_audience(
    claims: Mapping[str, Any], issuer: str, audience: tuple[str, ...]
) -> None:
    if claims.get("iss") != issuer:
        raise SetRejected("invalid_issuer", "unexpected iss")
    aud = claims.get("aud")
    values = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not any(isinstance(v, str) and v in audience for v in values):
        raise SetRejected("invalid_audience", "aud does not name this receiver")


def _identifier(claims: Mapping[str, Any], name: str) -> str:
    value = _optional_identifier(claims, name)
    if value is None:
        raise SetRejected("invalid_request", f"{name} is required")
    return value


def _optional_identifier(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= _MAX_ID:
        raise SetRejected("invalid_request", f"{name} must be a string of 1-{_MAX_ID} characters")
    return value


def _required_time(claims: Mapping[str, Any], name: str) -> datetime:
    value = _time(claims, name)
    if value is None:
        raise SetRejected("invalid_request", f"{name} is required")
    return value


def _time(claims: Mapping[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SetRejected("invalid_request", f"{name} must be a NumericDate")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise SetRejected("invalid_request", f"{name} is out of range") from None
