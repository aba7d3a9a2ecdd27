"""Clock skew of ±5 minutes between the publisher (identity service) and a consumer.

Which clock each rule reads:

* **Watermarks** (``subject.tokens_revoked``, ``global.tokens_revoked``) compare the token's
  ``iat`` with ``issued_before``. Both come from the identity service: it mints the token and
  publishes the event, so both are read from the *publisher's* clock and skew between
  publisher and consumer cannot move a token to the wrong side of the watermark. The consumer's
  clock is not consulted for the decision at all.
* **Block / unblock** order by ``(occurred_at, event id)``: publisher clock only.
* **Version bumps** compare integers: no clock.
* **Expiry of entries** compares ``expires_at`` (publisher clock: a token's own ``exp``, or
  ``issued_before + max_token_lifetime``) with the *consumer's* clock. A consumer running
  5 minutes fast drops an entry 5 minutes early in real time, but at that moment its own
  ``exp`` check (same host clock, PyJWT) already refuses every token the entry covered; one
  running 5 minutes slow keeps entries longer, which only costs memory. Skew between consumer
  clocks therefore moves *when* a token dies, as it does without Revocast, never lets a
  revoked token through.
* **Replay start** (``now - max_token_lifetime - leeway`` minus a 5-minute margin, consumer
  clock, against record timestamps): a fast consumer starts later in the log and skips only
  revocations of tokens that its own clock already considers expired; a slow one replays
  more. The margin absorbs a publisher whose clock runs behind (it stamps records older than
  they are): ``tests/consumer_sdk/test_kafka_source.py::
  test_the_replay_reaches_back_past_the_token_lifetime_for_a_producer_clock_behind``.

PyJWT reads the real clock, the state the injected one: so these tests keep tokens valid in
real time and shift only the SDK's clock, which isolates the rules above; the entry-expiry
boundary is checked on the state directly, in the consumer's own time.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest

from consumer_sdk import Revocast, RevokedBy, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from revocation_events import (
    GlobalTokensRevoked,
    SubjectBlocked,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
)
from tests.consumer_sdk._helpers import FakeClock, dt, settings, token

LIFETIME = 3600.0
SKEWS = [-300.0, 300.0]


@pytest.fixture(params=SKEWS, ids=["consumer_5min_slow", "consumer_5min_fast"])
def skew(request: pytest.FixtureRequest) -> float:
    value: float = request.param
    return value


@pytest.fixture
def clock(skew: float) -> FakeClock:
    return FakeClock(time.time() + skew)


@pytest.fixture
def src() -> InMemorySource:
    return InMemorySource()


@pytest.fixture
def rc(clock: FakeClock, src: InMemorySource) -> Iterator[Revocast]:
    with Revocast(settings(max_token_lifetime=LIFETIME), source=src, clock=clock) as client:
        src.set_ready()
        yield client


def rule(rc: Revocast, tok: str) -> RevokedBy | None:
    try:
        rc.verify(tok)
    except TokenRevokedError as exc:
        return exc.rule
    return None


def test_subject_watermark_splits_tokens_by_the_publishers_clock_whatever_the_consumers(
    rc: Revocast, src: InMemorySource
) -> None:
    publisher_now = time.time() - 10  # tokens issued after it are not in the future
    src.publish(
        SubjectTokensRevoked(
            issuer="idp",
            sub="alice",
            issued_before=dt(publisher_now),
            occurred_at=dt(publisher_now),
            expires_at=dt(publisher_now + LIFETIME),
        ),
    )
    before = token(sub="alice", at=publisher_now - 1)
    after = token(sub="alice", at=publisher_now + 1)
    assert rule(rc, before) is RevokedBy.SUBJECT_WATERMARK
    assert rule(rc, after) is None


def test_global_watermark_splits_tokens_by_the_publishers_clock_whatever_the_consumers(
    rc: Revocast, src: InMemorySource
) -> None:
    publisher_now = time.time() - 10  # tokens issued after it are not in the future
    src.publish(
        GlobalTokensRevoked(
            issuer="idp",
            issued_before=dt(publisher_now),
            occurred_at=dt(publisher_now),
            expires_at=dt(publisher_now + LIFETIME),
        ),
    )
    assert rule(rc, token(sub="bob", at=publisher_now - 1)) is RevokedBy.GLOBAL
    assert rule(rc, token(sub="bob", at=publisher_now + 1)) is None


def test_watermark_entry_outlives_every_token_it_covers_in_the_consumers_own_time(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    publisher_now = time.time() - 10  # tokens issued after it are not in the future
    src.publish(
        SubjectTokensRevoked(
            issuer="idp",
            sub="alice",
            issued_before=dt(publisher_now),
            occurred_at=dt(publisher_now),
            expires_at=dt(publisher_now + LIFETIME),
        ),
    )
    # The last token it covers: issued just before the watermark, living the max lifetime.
    last_exp = publisher_now - 1 + LIFETIME
    covered = {"sub": "alice", "iat": publisher_now - 1, "exp": last_exp}
    clock.now = last_exp - 1  # the consumer's clock still accepts the token's exp
    assert rc.state.check(covered, None) is not None
    rc.state.expire()
    assert rc.state.check(covered, None) is not None, "expired while a covered token lives"
    clock.now = publisher_now + LIFETIME + 1
    rc.state.expire()
    assert rc.state.size_by_kind()["subject_watermark"] == 0


def test_block_and_unblock_order_by_the_publishers_clock(rc: Revocast, src: InMemorySource) -> None:
    publisher_now = time.time() - 10  # tokens issued after it are not in the future
    # Delivered out of order, the consumer's clock in between the two publisher times.
    unblock = SubjectUnblocked(
        issuer="idp",
        sub="carol",
        occurred_at=dt(publisher_now),
        expires_at=dt(publisher_now + LIFETIME),
    )
    block = SubjectBlocked(issuer="idp", sub="carol", occurred_at=dt(publisher_now - 60))
    src.publish(unblock)
    src.publish(block)
    assert rule(rc, token(sub="carol")) is None
    later_block = SubjectBlocked(
        issuer="idp", sub="carol", occurred_at=dt(publisher_now) + timedelta(seconds=1)
    )
    src.publish(later_block)
    assert rule(rc, token(sub="carol")) is RevokedBy.BLOCKED


def test_version_bump_needs_no_clock(rc: Revocast, src: InMemorySource) -> None:
    src.publish(
        SubjectVersionBumped(
            issuer="idp",
            sub="dave",
            min_version=3,
            expires_at=dt(time.time() + LIFETIME),
        ),
    )
    assert rule(rc, token(sub="dave", ver=2)) is RevokedBy.VERSION
    assert rule(rc, token(sub="dave", ver=3)) is None
