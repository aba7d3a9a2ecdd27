"""Event factories shared by the streams tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from revocation_events import (
    EncodedEvent,
    Event,
    EventCodec,
    EventSigner,
    EventVerifier,
    SigningKey,
    public_key_spec,
)
from streams import Rule

KEY = SigningKey.hmac("streams-test", b"s" * 32)
KEY_SPEC = public_key_spec(KEY)
SIGNING_CODEC = EventCodec(signer=EventSigner(KEY))
VERIFYING_CODEC = EventCodec(verifier=EventVerifier([KEY.verification_key()]))
T0 = datetime(2030, 1, 1, tzinfo=UTC)
"""A fixed 'now' for the pure tests."""


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def uid(n: int) -> uuid.UUID:
    return uuid.UUID(int=n)


def encode(event: Event) -> EncodedEvent:
    return SIGNING_CODEC.encode(event)


def rule(event: Event) -> Rule:
    encoded = encode(event)
    decoded = VERIFYING_CODEC.decode(encoded.value, encoded.headers)
    return Rule(event=decoded, value=encoded.value, signature=encoded.headers[0][1])
