"""Tokens that outlive the rules meant to refuse them.

Every time-limited rule (``sid``, subject watermark, deletion, version, global watermark) is
kept ``max_token_lifetime`` (L) past the moment it covers, because a token issued before that
moment is expired by then. That holds only for tokens with ``exp - iat <= L``: a longer-lived
token (an IdP configured with a longer lifetime than the services, a "remember me" flow) would
be accepted again once the rule is forgotten, and a restarted SDK replays only ``L`` back."""

from __future__ import annotations

import time
from collections.abc import Iterator

import jwt
import pytest

from consumer_sdk import Revocast, RevocastTokenError, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from revocation_events import SessionRevoked
from tests.consumer_sdk._helpers import FakeClock, dt, settings, token

LIFETIME = 600


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def src() -> InMemorySource:
    return InMemorySource()


@pytest.fixture
def rc(src: InMemorySource, clock: FakeClock) -> Iterator[Revocast]:
    with Revocast(settings(max_token_lifetime=LIFETIME), source=src, clock=clock) as client:
        src.set_ready()
        yield client


def test_a_token_living_longer_than_max_token_lifetime_cannot_outlive_its_session_rule(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    long_lived = token(at=clock.now, lifetime=4 * LIFETIME, sid="s-long")
    src.publish(SessionRevoked(issuer="idp", sid="s-long", expires_at=dt(clock.now)))
    clock.advance(LIFETIME + 60)  # the sid rule is forgotten; the token is still unexpired
    src.tick()
    with pytest.raises(jwt.InvalidTokenError):
        rc.verify(long_lived)


def test_a_token_longer_than_max_token_lifetime_is_refused_with_a_revocast_error(
    rc: Revocast, clock: FakeClock
) -> None:
    with pytest.raises(RevocastTokenError, match="max_token_lifetime"):
        rc.verify(token(at=clock.now, lifetime=LIFETIME + 1))


def test_a_token_of_exactly_max_token_lifetime_is_accepted_and_its_session_rule_holds(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    at = time.time() - 0.5  # a fractional iat, as the reference IdP mints: exp - iat < L
    tok = token(at=int(at), lifetime=LIFETIME, sid="s-ok", iat=at)
    assert rc.verify(tok)["sid"] == "s-ok"
    src.publish(SessionRevoked(issuer="idp", sid="s-ok", expires_at=dt(clock.now)))
    clock.advance(LIFETIME - 1)
    src.tick()
    with pytest.raises(TokenRevokedError):
        rc.verify(tok)


def test_an_exp_beyond_the_float_range_is_refused_not_a_crash_with_the_verify_cache(
    src: InMemorySource, clock: FakeClock
) -> None:
    # PyJWT accepts an integer exp of any size; the verified-token cache then raised
    # OverflowError (a 500 from every adapter) computing the entry's expiry as a float.
    cached = settings(max_token_lifetime=LIFETIME, verify_cache_size=10)
    with Revocast(cached, source=src, clock=clock) as client:
        src.set_ready()
        with pytest.raises(RevocastTokenError, match="max_token_lifetime"):
            client.verify(token(at=clock.now, exp=10**400))
