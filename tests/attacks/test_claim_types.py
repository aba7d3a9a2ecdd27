"""Claims a revocation rule matches on, in a type no rule can name.

Events name sessions, subjects and tokens by strings. PyJWT refuses a ``sub`` or ``jti`` that
is not a string; a ``sid`` of another type (an IdP with numeric session ids) was accepted, and
no ``session.revoked`` could ever match it: the session's tokens outlived its logout."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from consumer_sdk import Revocast, RevocastTokenError, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from revocation_events import SessionRevoked
from tests.consumer_sdk._helpers import SECRET, dt, settings, token


@pytest.fixture(scope="module")
def rc() -> Iterator[Revocast]:
    src = InMemorySource()
    with Revocast(settings(), source=src) as client:
        src.set_ready()
        for sid in ("12345", "['s1']", '["s1"]', "s1", "True", "None"):
            src.publish(SessionRevoked(issuer="idp", sid=sid, expires_at=dt(time.time())))
        yield client


def _with_sid(sid: Any) -> str:
    now = int(time.time())
    payload = {"sub": "alice", "jti": "j", "iat": now, "exp": now + 600, "sid": sid}
    return jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": "k1"})


@pytest.mark.parametrize("sid", [12345, 12345.0, ["s1"], {"id": "s1"}, True, None], ids=repr)
def test_a_session_id_that_is_not_a_string_is_refused_since_no_logout_could_match_it(
    rc: Revocast, sid: Any
) -> None:
    with pytest.raises(RevocastTokenError, match="'sid' must be a string"):
        rc.verify(_with_sid(sid))


def test_a_string_session_id_is_accepted_and_its_logout_refuses_it(rc: Revocast) -> None:
    assert rc.verify(token(sid="s2"))["sid"] == "s2"
    with pytest.raises(TokenRevokedError):
        rc.verify(token(sid="s1"))


def test_a_token_without_a_session_id_is_accepted(rc: Revocast) -> None:
    assert "sid" not in rc.verify(token())
