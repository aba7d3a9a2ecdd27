"""The case table every adapter runs: one request, one expected answer.

Each adapter's test module provides ``send(headers) -> Reply`` for its framework's own test
client, against an app whose protected handler answers ``{"sub": ..., "jti": ...}`` from the
claims the adapter handed it, and runs :func:`check` over :data:`CASES`.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jwt

from consumer_sdk import Revocast
from consumer_sdk.testing import InMemorySource
from revocation_events import (
    BaseEvent,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectVersionBumped,
    TokenRevoked,
)
from tests.consumer_sdk._helpers import FakeClock, dt, settings, token

__all__ = [
    "CASES",
    "NOT_PREFLIGHTS",
    "ORIGIN",
    "PREFLIGHT",
    "Case",
    "Harness",
    "Headers",
    "Reply",
    "case_ids",
    "check",
    "join_headers",
    "new_harness",
]

Headers = list[tuple[str, str]]
MAX_STALENESS = 30.0
ISSUER = "idp"


@dataclass
class Harness:
    """A Revocast client fed by an in-memory source, on a fake clock; and one subject's token
    whose claims are distinctive enough to spot if a response ever echoes them."""

    revocast: Revocast
    source: InMemorySource
    clock: FakeClock
    sub: str = field(default_factory=lambda: f"sub-{uuid.uuid4().hex[:10]}")
    sid: str = field(default_factory=lambda: f"sid-{uuid.uuid4().hex[:10]}")
    jti: str = field(default_factory=lambda: f"jti-{uuid.uuid4().hex[:10]}")

    def token(self, **claims: Any) -> str:
        values: dict[str, Any] = {"sub": self.sub, "sid": self.sid, "jti": self.jti, "ver": 1}
        values.update(claims)
        return token(**values)

    def bearer(self, **claims: Any) -> Headers:
        return [("Authorization", f"Bearer {self.token(**claims)}")]

    def publish(self, event: BaseEvent) -> None:
        self.source.publish(event)

    @property
    def expires(self) -> datetime:
        return dt(self.clock() + 3600)


def new_harness() -> Harness:
    """An SDK that has not caught up yet (INITIALIZING) with an empty revocation state."""
    clock = FakeClock()
    source = InMemorySource()
    rc = Revocast(settings(max_staleness=MAX_STALENESS), source=source, clock=clock)
    return Harness(rc, source, clock)


@dataclass(frozen=True)
class Reply:
    """A response, normalised across frameworks: lower-case header names, decoded JSON."""

    status: int
    headers: Mapping[str, str]
    body: Any
    raw: bytes


@dataclass(frozen=True)
class Case:
    id: str
    arrange: Callable[[Harness], Headers]
    status: int
    challenge: str | None = None
    """The exact ``WWW-Authenticate`` expected; ``None``: the header must be absent."""
    description: str | None = None
    ready: bool = True
    """Whether the SDK has caught up with the topic before the request."""


def _challenge(error: str, description: str) -> str:
    return f'Bearer error="{error}", error_description="{description}"'


def _invalid(description: str = "invalid token") -> str:
    return _challenge("invalid_token", description)


def _revoked(event: Callable[[Harness], BaseEvent], **claims: Any) -> Callable[[Harness], Headers]:
    def arrange(h: Harness) -> Headers:
        headers = h.bearer(**claims)
        h.publish(event(h))
        return headers

    return arrange


def _alg_none(h: Harness) -> Headers:
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "kid": "k1"}).encode())
    payload = jwt.decode(h.token(), options={"verify_signature": False})
    body = base64.urlsafe_b64encode(json.dumps(payload).encode())
    unsigned = f"{header.decode().rstrip('=')}.{body.decode().rstrip('=')}."
    return [("Authorization", f"Bearer {unsigned}")]


def _stale(h: Harness) -> Headers:
    h.source.interrupt("broker gone")
    h.clock.advance(MAX_STALENESS + 1)
    return h.bearer()


def _interrupted_recently(h: Harness) -> Headers:
    h.source.interrupt("broker gone")
    h.clock.advance(MAX_STALENESS - 1)
    return h.bearer()


def _foreign_key(h: Harness) -> Headers:
    return [("Authorization", f"Bearer {h.token(key=b'x' * 32)}")]


def _expired(h: Harness) -> Headers:
    return h.bearer(at=time.time() - 7200, lifetime=600)


REVOCATIONS: dict[str, Callable[[Harness], BaseEvent]] = {
    "jti": lambda h: TokenRevoked(issuer=ISSUER, jti=h.jti, expires_at=h.expires),
    "sid": lambda h: SessionRevoked(issuer=ISSUER, sid=h.sid, expires_at=h.expires),
    "subject_watermark": lambda h: SubjectTokensRevoked(
        issuer=ISSUER, sub=h.sub, issued_before=dt(h.clock() + 1), expires_at=h.expires
    ),
    "blocked": lambda h: SubjectBlocked(issuer=ISSUER, sub=h.sub),
    "deleted": lambda h: SubjectDeleted(issuer=ISSUER, sub=h.sub, expires_at=h.expires),
    "version": lambda h: SubjectVersionBumped(
        issuer=ISSUER, sub=h.sub, min_version=2, expires_at=h.expires
    ),
    "key": lambda h: KeyRevoked(issuer=ISSUER, kid="k1"),
    "global": lambda h: GlobalTokensRevoked(
        issuer=ISSUER, issued_before=dt(h.clock() + 1), expires_at=h.expires
    ),
}


def _header(value: str) -> Callable[[Harness], Headers]:
    return lambda h: [("Authorization", value.replace("{token}", h.token()))]


CASES: Sequence[Case] = [
    Case("valid_token_is_accepted", lambda h: h.bearer(), 200),
    Case("scheme_is_case_insensitive", _header("bearer {token}"), 200),
    Case("interrupted_within_max_staleness_still_serves", _interrupted_recently, 200),
    Case("expired_token_is_refused_as_expired", _expired, 401, _invalid("token expired")),
    Case(
        "token_not_yet_valid_is_refused",
        lambda h: h.bearer(nbf=int(time.time()) + 600),
        401,
        _invalid(),
    ),
    Case("bad_signature_is_refused", _foreign_key, 401, _invalid()),
    Case("alg_none_token_is_refused", _alg_none, 401, _invalid()),
    Case("garbage_token_is_refused", _header("Bearer not.a.jwt"), 401, _invalid()),
    Case(
        "oversized_token_is_refused",
        _header("Bearer " + "a" * 9000),
        401,
        _invalid(),
    ),
    *(
        Case(f"revoked_by_{rule}_is_refused_as_revoked", _revoked(event), 401, None)
        for rule, event in REVOCATIONS.items()
    ),
    Case(
        "sdk_not_ready_answers_503",
        lambda h: h.bearer(),
        503,
        None,
        "revocation state unavailable",
        ready=False,
    ),
    Case(
        "state_stale_beyond_max_staleness_answers_503",
        _stale,
        503,
        None,
        "revocation state unavailable",
    ),
    Case(
        "invalid_token_is_refused_even_while_not_ready",
        _foreign_key,
        401,
        _invalid(),
        ready=False,
    ),
    Case("missing_header_gets_a_bare_challenge", lambda h: [], 401, "Bearer"),
    Case("empty_header_gets_a_bare_challenge", _header(""), 401, "Bearer"),
    Case("basic_scheme_gets_a_bare_challenge", _header("Basic dXNlcjpwdw=="), 401, "Bearer"),
    Case(
        "bearer_without_token_is_a_bad_request",
        _header("Bearer"),
        400,
        _challenge("invalid_request", "bearer token missing"),
    ),
    Case(
        "bearer_with_two_tokens_is_a_bad_request",
        _header("Bearer {token} {token}"),
        400,
        _challenge("invalid_request", "malformed bearer token"),
    ),
    Case(
        "token_outside_b64token_syntax_is_a_bad_request",
        _header('Bearer {token}"'),
        400,
        _challenge("invalid_request", "malformed bearer token"),
    ),
    Case(
        "two_authorization_headers_are_a_bad_request",
        lambda h: h.bearer() + h.bearer(),
        400,
        None,  # ASGI sees two headers, WSGI one comma-joined value: either way a 400
    ),
]
_BY_ID = {c.id: c for c in CASES}
assert len(_BY_ID) == len(CASES)


def case_ids() -> list[str]:
    return [c.id for c in CASES]


def expected_challenge(case: Case) -> str | None:
    if case.id.startswith("revoked_by_"):
        rule = case.id.removeprefix("revoked_by_").removesuffix("_is_refused_as_revoked")
        return _invalid(f"token revoked ({rule})")
    return case.challenge


def check(case: Case, h: Harness, send: Callable[[Headers], Reply]) -> Reply:
    """Arrange ``case``, send it and assert the answer every adapter must give."""
    if case.ready:
        h.source.set_ready()
    reply = send(case.arrange(h))
    assert reply.status == case.status, (reply.status, reply.body)
    if case.status == 200:
        assert reply.body == {"sub": h.sub, "jti": h.jti}
        return reply
    challenge = reply.headers.get("www-authenticate")
    if case.id == "two_authorization_headers_are_a_bad_request":
        assert challenge is not None
        assert challenge.startswith('Bearer error="invalid_request"')
    else:
        assert challenge == expected_challenge(case)
    assert ("retry-after" in reply.headers) == (case.status == 503)
    assert set(reply.body) == {"error", "error_description"}
    if challenge is not None and "error_description" in challenge:
        assert f'error_description="{reply.body["error_description"]}"' in challenge
    if case.description is not None:
        assert reply.body["error_description"] == case.description
    # Nothing the token says ever comes back in a refusal.
    seen = reply.raw + json.dumps(dict(reply.headers)).encode()
    for secret in (h.sub, h.sid, h.jti):
        assert secret.encode() not in seen
    return reply


def join_headers(headers: Headers) -> dict[str, str]:
    """Headers as a WSGI server passes them: repeated names joined by a comma (CGI)."""
    joined: dict[str, str] = {}
    for name, value in headers:
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


ORIGIN = "https://app.example"
PREFLIGHT: Headers = [
    ("Origin", ORIGIN),
    ("Access-Control-Request-Method", "GET"),
    ("Access-Control-Request-Headers", "authorization"),
]
"""What a browser sends on a CORS preflight: no credentials."""

NOT_PREFLIGHTS: dict[str, Headers] = {
    "plain-options": [],
    "origin-only": PREFLIGHT[:1],
    "request-method-only": PREFLIGHT[1:],
    "preflight-with-bearer": [*PREFLIGHT, ("Authorization", "Bearer not.a.jwt")],
    "preflight-with-basic": [*PREFLIGHT, ("Authorization", "Basic dXNlcjpwdw==")],
}
"""``OPTIONS`` requests that are not genuine preflights, so are verified (and refused)."""
