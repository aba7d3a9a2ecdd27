"""Shared test helpers for the consumer SDK: a fake clock, tokens, settings and events."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import jwt

from consumer_sdk import ConsumerSettings
from revocation_events import SigningKey, VerificationKey

SECRET = b"s" * 32
EVENT_KEY = SigningKey.hmac("ev1", b"e" * 32)
ISSUER = "https://idp.example"


class FakeClock:
    """A clock that only moves when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def settings(**overrides: Any) -> ConsumerSettings:
    values: dict[str, Any] = {
        "algorithms": ("HS256",),
        "jwt_keys": {"k1": SECRET},
        "event_keys": (EVENT_KEY.verification_key(),),
    }
    values.update(overrides)
    return ConsumerSettings(**values)


def token(
    *,
    key: Any = SECRET,
    algorithm: str = "HS256",
    kid: str | None = "k1",
    lifetime: float = 600,
    at: float | None = None,
    **claims: Any,
) -> str:
    now = int(time.time()) if at is None else int(at)
    payload: dict[str, Any] = {
        "sub": "alice",
        "jti": uuid.uuid4().hex,
        "iat": now,
        "exp": now + int(lifetime),
    }
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def event_keys() -> tuple[VerificationKey, ...]:
    return (EVENT_KEY.verification_key(),)
