"""Forged revocation events: an attacker who can write to the topic but does not hold the
event key tries to lift a block and roll a permission version back. Every forgery is refused
and counted under its skip reason; the block and the version stay enforced."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from consumer_sdk import Revocast, RevokedBy, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from revocation_events import (
    SIGNATURE_HEADER,
    BaseEvent,
    EncodedEvent,
    EventCodec,
    EventSigner,
    SigningKey,
    SubjectBlocked,
    SubjectUnblocked,
    SubjectVersionBumped,
)
from tests.consumer_sdk._helpers import EVENT_KEY, dt, settings, token
from tests.faults._figures import record_figures

GENUINE = EventCodec(signer=EventSigner(EVENT_KEY))
LATER = dt(time.time() + 3600)


@pytest.fixture
def src() -> InMemorySource:
    return InMemorySource()


@pytest.fixture
def rc(src: InMemorySource) -> Iterator[Revocast]:
    with Revocast(settings(), source=src) as client:
        src.set_ready()
        for event in (
            SubjectBlocked(issuer="idp", sub="mallory"),
            SubjectVersionBumped(issuer="idp", sub="alice", min_version=5, expires_at=LATER),
        ):
            rec = GENUINE.encode(event)
            src.publish_raw(rec.value, rec.headers)
        assert client.stats()["applied"] == {"subject.blocked": 1, "subject.version_bumped": 1}
        yield client


def unblock() -> SubjectUnblocked:
    # Dated after the block: it would win if it were accepted.
    return SubjectUnblocked(issuer="idp", sub="mallory", expires_at=LATER)


def rollback() -> SubjectVersionBumped:
    return SubjectVersionBumped(issuer="idp", sub="alice", min_version=0, expires_at=LATER)


def unsigned(event: BaseEvent) -> EncodedEvent:
    return EventCodec().encode(event)


def wrong_key(event: BaseEvent) -> EncodedEvent:
    return EventCodec(signer=EventSigner(SigningKey.hmac("attacker", b"a" * 32))).encode(event)


def stolen_kid(event: BaseEvent) -> EncodedEvent:
    # The genuine key id, the attacker's secret.
    return EventCodec(signer=EventSigner(SigningKey.hmac(EVENT_KEY.kid, b"a" * 32))).encode(event)


def altered_after_signing(event: BaseEvent) -> EncodedEvent:
    # A genuine event for someone else, edited to name the victim after it was signed.
    original = GENUINE.encode(event.model_copy(update={"sub": "someone-else"}))
    value = original.value.replace(b'"someone-else"', b'"' + event.subject().encode() + b'"')  # type: ignore[union-attr]
    assert value != original.value
    return EncodedEvent(original.key, value, original.headers)


def signature_of_another_record(event: BaseEvent) -> EncodedEvent:
    donor = GENUINE.encode(SubjectBlocked(issuer="idp", sub="someone-else"))
    return EncodedEvent(unsigned(event).key, unsigned(event).value, donor.headers)


def garbled_signature_header(event: BaseEvent) -> EncodedEvent:
    rec = unsigned(event)
    return EncodedEvent(rec.key, rec.value, ((SIGNATURE_HEADER, b"\xff\x00not-a-signature"),))


FORGERIES: dict[str, tuple[Callable[[BaseEvent], EncodedEvent], str]] = {
    "unsigned": (unsigned, "unsigned"),
    "signed_with_an_unknown_key": (wrong_key, "unknown_key"),
    "genuine_kid_attacker_secret": (stolen_kid, "bad_signature"),
    "altered_after_signing": (altered_after_signing, "bad_signature"),
    "signature_copied_from_another_record": (signature_of_another_record, "bad_signature"),
    "garbled_signature_header": (garbled_signature_header, "bad_signature"),
}


def refused_by(rc: Revocast, tok: str) -> RevokedBy | None:
    try:
        rc.verify(tok)
    except TokenRevokedError as exc:
        return exc.rule
    return None


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_unblock_is_refused_counted_and_the_block_holds(
    rc: Revocast, src: InMemorySource, forge: tuple[Callable[[BaseEvent], EncodedEvent], str]
) -> None:
    make, reason = forge
    rec = make(unblock())
    src.publish_raw(rec.value, rec.headers)
    assert rc.stats()["skipped"] == {reason: 1}
    assert refused_by(rc, token(sub="mallory")) is RevokedBy.BLOCKED


@pytest.mark.parametrize("forge", FORGERIES.values(), ids=FORGERIES.keys())
def test_forged_version_rollback_is_refused_counted_and_the_version_holds(
    rc: Revocast, src: InMemorySource, forge: tuple[Callable[[BaseEvent], EncodedEvent], str]
) -> None:
    make, reason = forge
    rec = make(rollback())
    src.publish_raw(rec.value, rec.headers)
    assert rc.stats()["skipped"] == {reason: 1}
    assert refused_by(rc, token(sub="alice", ver=4)) is RevokedBy.VERSION
    assert refused_by(rc, token(sub="alice", ver=5)) is None


def test_genuinely_signed_rollback_cannot_lower_the_version_either(
    rc: Revocast, src: InMemorySource
) -> None:
    """Versions only move up, so even a replayed or buggy signed event cannot roll back."""
    rec = GENUINE.encode(rollback())
    src.publish_raw(rec.value, rec.headers)
    assert refused_by(rc, token(sub="alice", ver=4)) is RevokedBy.VERSION


def test_every_forgery_of_every_kind_is_refused_and_counted(
    rc: Revocast, src: InMemorySource
) -> None:
    tried = 0
    for make, _ in FORGERIES.values():
        for event in (unblock(), rollback()):
            rec = make(event)
            src.publish_raw(rec.value, rec.headers)
            tried += 1
    stats = rc.stats()
    counted = sum(stats["skipped"].values())
    accepted = sum(stats["applied"].values()) - 2  # the two genuine events of the fixture
    assert counted == tried
    assert accepted == 0
    assert refused_by(rc, token(sub="mallory")) is RevokedBy.BLOCKED
    assert refused_by(rc, token(sub="alice", ver=4)) is RevokedBy.VERSION
    record_figures("forged_events", forgeries_tried=tried, counted=counted, accepted=accepted)
