"""Bad arguments are refused with InvalidRevocationError before anything is written or sent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from producer import MAX_FUTURE_SKEW, InvalidRevocationError, Publisher, PublishResult
from revocation_events import RevocastError, SubjectTokensRevoked, TokenRevoked
from tests.producer.conftest import FIXED_NOW

Call = Callable[[Publisher], PublishResult]
LATER = FIXED_NOW + timedelta(hours=1)
NAIVE = datetime(2030, 1, 2, 4, 0, 0)

BAD_CALLS: dict[str, Call] = {
    "empty jti": lambda p: p.revoke_token("", expires_at=LATER),
    "blank jti": lambda p: p.revoke_token("   ", expires_at=LATER),
    "jti not a string": lambda p: p.revoke_token(42, expires_at=LATER),  # type: ignore[arg-type]
    "jti too long": lambda p: p.revoke_token("j" * 257, expires_at=LATER),
    "empty token sub": lambda p: p.revoke_token("j", expires_at=LATER, sub=""),
    "naive exp": lambda p: p.revoke_token("j", expires_at=NAIVE),
    "exp already past": lambda p: p.revoke_token("j", expires_at=FIXED_NOW - timedelta(seconds=1)),
    "exp equal to now": lambda p: p.revoke_token("j", expires_at=FIXED_NOW),
    "exp not a time": lambda p: p.revoke_token("j", expires_at="tomorrow"),  # type: ignore[arg-type]
    "exp a bool": lambda p: p.revoke_token("j", expires_at=True),
    "empty sid": lambda p: p.revoke_session(""),
    "empty subject": lambda p: p.revoke_subject(""),
    "naive issued_before": lambda p: p.revoke_subject("s", issued_before=NAIVE),
    "subject watermark in the future": lambda p: p.revoke_subject(
        "s", issued_before=FIXED_NOW + MAX_FUTURE_SKEW + timedelta(seconds=1)
    ),
    "global watermark in the future": lambda p: p.revoke_all(
        issued_before=FIXED_NOW + MAX_FUTURE_SKEW + timedelta(seconds=1)
    ),
    "naive global watermark": lambda p: p.revoke_all(issued_before=NAIVE),
    "subject watermark at the end of time": lambda p: p.revoke_subject(
        "s", issued_before=datetime.max.replace(tzinfo=UTC)
    ),
    "global watermark at the end of epoch time": lambda p: p.revoke_all(
        issued_before=253_402_300_799
    ),
    "empty block sub": lambda p: p.block_subject(""),
    "empty unblock sub": lambda p: p.unblock_subject(" "),
    "empty deleted sub": lambda p: p.delete_subject(""),
    "negative min_version": lambda p: p.bump_subject_version("s", min_version=-1),
    "bool min_version": lambda p: p.bump_subject_version("s", min_version=True),
    "float min_version": lambda p: p.bump_subject_version("s", min_version=1.5),  # type: ignore[arg-type]
    "empty kid": lambda p: p.revoke_key(""),
    "reason too long": lambda p: p.block_subject("s", reason="r" * 257),
    "reason not a string": lambda p: p.block_subject("s", reason=None),  # type: ignore[arg-type]
    "not an event": lambda p: p.publish({"type": "subject.blocked"}),  # type: ignore[arg-type]
    "ready-made expired token event": lambda p: p.publish(
        TokenRevoked(issuer="i", jti="j", expires_at=FIXED_NOW - timedelta(minutes=1))
    ),
    "ready-made future watermark": lambda p: p.publish(
        SubjectTokensRevoked(
            issuer="i",
            occurred_at=FIXED_NOW,
            sub="s",
            issued_before=FIXED_NOW + timedelta(minutes=4),
            expires_at=FIXED_NOW + timedelta(hours=2),
        )
    ),
}


@pytest.mark.parametrize("call", BAD_CALLS.values(), ids=BAD_CALLS.keys())
def test_bad_argument_is_refused_before_anything_is_queued(
    offline_publisher: Publisher, call: Call
) -> None:
    with pytest.raises(InvalidRevocationError) as info:
        call(offline_publisher)
    assert isinstance(info.value, RevocastError)
    assert isinstance(info.value, ValueError)
    assert offline_publisher.pending_count() == 0


def test_publish_many_refuses_the_whole_batch_when_one_event_is_bad(
    offline_publisher: Publisher,
) -> None:
    good = TokenRevoked(issuer="i", jti="ok", expires_at=LATER)
    bad = TokenRevoked(issuer="i", jti="old", expires_at=FIXED_NOW - timedelta(minutes=1))
    with pytest.raises(InvalidRevocationError, match="old"):
        offline_publisher.publish_many([good, bad])
    assert offline_publisher.pending_count() == 0


def test_publish_many_refuses_the_same_event_twice_in_one_batch(
    offline_publisher: Publisher,
) -> None:
    # Outbox mode keyed the calls' waiters by event id: it stored both rows but returned one
    # result for the two events, so a caller pairing results with events lost track of one.
    event = TokenRevoked(issuer="i", jti="j", expires_at=LATER)
    with pytest.raises(InvalidRevocationError, match=str(event.id)):
        offline_publisher.publish_many([event, event])
    assert offline_publisher.pending_count() == 0


ACCEPTED_SKEW: dict[str, Call] = {
    "subject watermark within the skew": lambda p: p.revoke_subject(
        "s", issued_before=FIXED_NOW + MAX_FUTURE_SKEW
    ),
    "epoch exp like a JWT claim": lambda p: p.revoke_token("j", expires_at=int(LATER.timestamp())),
    "watermark in the past": lambda p: p.revoke_all(issued_before=FIXED_NOW - timedelta(days=1)),
}


@pytest.mark.parametrize("call", ACCEPTED_SKEW.values(), ids=ACCEPTED_SKEW.keys())
def test_valid_edge_arguments_are_queued(offline_publisher: Publisher, call: Call) -> None:
    result = call(offline_publisher)
    assert result.queued
    assert offline_publisher.pending_count() == 1


def test_clock_returning_naive_time_is_refused(make_settings: Any) -> None:
    with Publisher(make_settings(), clock=lambda: NAIVE) as publisher:
        with pytest.raises(InvalidRevocationError, match="naive"):
            publisher.block_subject("s")
        assert publisher.pending_count() == 0
