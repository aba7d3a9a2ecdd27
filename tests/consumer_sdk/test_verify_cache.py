"""The opt-in verified-token cache (``verify_cache_size``): a hit skips only the signature check.

Every test injects the clock; PyJWT's own clock (used on a miss) is pinned to the same fake
clock, so "exactly as uncached" is checked by running an uncached instance side by side.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, tzinfo
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest

from consumer_sdk import (
    ConsumerSettings,
    Revocast,
    RevocastTokenError,
    SourceErrorKind,
    StateUnavailableError,
    TokenRevokedError,
)
from consumer_sdk._verify import VerifyCache
from consumer_sdk.testing import InMemorySource
from revocation_events import (
    KeyRevoked,
    SettingsError,
    SubjectBlocked,
    SubjectUnblocked,
    TokenRevoked,
)
from tests.consumer_sdk._helpers import SECRET, FakeClock, dt, event_keys, settings, token

SIZE = 8


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The SDK's clock, also used by PyJWT for the uncached path."""
    fake = FakeClock()

    class _Now(datetime):
        @classmethod
        def now(cls, tz: tzinfo | None = None) -> _Now:
            return cls.fromtimestamp(fake.now, tz)

    monkeypatch.setattr(jwt.api_jwt, "datetime", _Now)
    return fake


def _make(clock: FakeClock, **overrides: Any) -> tuple[Revocast, InMemorySource]:
    src = InMemorySource()
    rc = Revocast(settings(**overrides), source=src, clock=clock)
    src.set_ready()
    return rc, src


@pytest.fixture
def pair(clock: FakeClock) -> Iterator[Callable[..., tuple[Revocast, Revocast, InMemorySource]]]:
    """A cached and an uncached instance with the same settings; events go to both."""
    made: list[Revocast] = []

    def make(**overrides: Any) -> tuple[Revocast, Revocast, InMemorySource]:
        cached, src = _make(clock, verify_cache_size=SIZE, **overrides)
        plain, src2 = _make(clock, **overrides)
        made.extend((cached, plain))

        class Both(InMemorySource):
            def publish(self, event: Any) -> None:
                src.publish(event)
                src2.publish(event)

            def interrupt(
                self,
                error: str = "interrupted",
                kind: SourceErrorKind = SourceErrorKind.SOURCE_ERROR,
            ) -> None:
                src.interrupt(error, kind)
                src2.interrupt(error, kind)

        return cached, plain, Both()

    yield make
    for rc in made:
        rc.close()


def cache_of(rc: Revocast) -> VerifyCache:
    cache = rc._verifier.cache
    assert cache is not None
    return cache


def outcome(rc: Revocast, tok: str) -> tuple[str, str]:
    """What verify did, comparable across instances: ("ok", jti) or (error type, message)."""
    try:
        return "ok", rc.verify(tok)["jti"]
    except jwt.InvalidTokenError as exc:
        return type(exc).__name__, str(exc)


def test_cache_is_off_by_default(clock: FakeClock) -> None:
    rc, _ = _make(clock)
    assert rc._verifier.cache is None
    rc.close()


def test_a_repeated_token_is_served_without_decoding_it_again(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rc, _ = _make(clock, verify_cache_size=SIZE)
    decodes = 0
    real = rc._verifier._decode_complete

    def counting(*args: Any, **kwargs: Any) -> dict[str, Any]:
        nonlocal decodes
        decodes += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(rc._verifier, "_decode_complete", counting)
    tok = token(jti="a")
    assert [rc.verify(tok)["jti"] for _ in range(3)] == ["a", "a", "a"]
    assert rc.verify(tok.encode())["jti"] == "a"  # the same bytes, given as bytes
    assert decodes == 1
    assert (cache_of(rc).hits, cache_of(rc).misses) == (3, 1)
    rc.close()


def test_a_token_differing_in_one_byte_is_verified_in_full(clock: FakeClock) -> None:
    rc, _ = _make(clock, verify_cache_size=SIZE)
    tok = token(jti="a")
    rc.verify(tok)
    head, payload, sig = tok.split(".")
    forged = f"{head}.{payload}.{sig[:-2]}{'A' if sig[-2] != 'A' else 'B'}{sig[-1]}"
    with pytest.raises(jwt.InvalidSignatureError):
        rc.verify(forged)
    rc.close()


@pytest.mark.parametrize("leeway", [0.0, 30.0])
def test_an_expired_token_fails_on_a_hit_exactly_as_uncached(
    pair: Callable[..., tuple[Revocast, Revocast, InMemorySource]],
    clock: FakeClock,
    leeway: float,
) -> None:
    cached, plain, _ = pair(leeway=leeway)
    tok = token(at=clock.now, lifetime=60, jti="t")
    assert outcome(cached, tok) == outcome(plain, tok) == ("ok", "t")
    exp = int(clock.now) + 60
    clock.now = exp + leeway - 0.5
    assert outcome(cached, tok) == outcome(plain, tok) == ("ok", "t")
    assert cache_of(cached).hits == 1
    clock.now = exp + leeway
    assert outcome(cached, tok) == outcome(plain, tok)
    assert outcome(cached, tok) == ("ExpiredSignatureError", "Signature has expired")


def test_the_hit_path_itself_refuses_an_expired_entry(clock: FakeClock) -> None:
    # The TLRU cache hides expired entries; the hit path's own check is the second line.
    cache = VerifyCache(SIZE, clock=clock, leeway=0)
    claims = {"jti": "x", "iat": int(clock.now), "exp": int(clock.now) + 10}
    cache.put(b"tok", claims, "k1", cache.generation)
    # The TLRU lookup still reads the test clock (entry alive); the hit's own check reads a
    # clock that has moved on to exp in between.
    cache._clock = lambda: clock.now + 10
    with pytest.raises(jwt.ExpiredSignatureError, match="Signature has expired"):
        cache.get(b"tok")


def test_an_expired_entry_is_dropped_from_the_cache(clock: FakeClock) -> None:
    rc, _ = _make(clock, verify_cache_size=SIZE, leeway=5)
    rc.verify(token(at=clock.now, lifetime=60))
    rc.verify(token(at=clock.now, lifetime=600))
    assert len(cache_of(rc)) == 2
    clock.advance(64)
    assert len(cache_of(rc)) == 2
    clock.advance(1)  # exp + leeway
    assert len(cache_of(rc)) == 1
    rc.close()


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_clock_stepping_back_before_nbf_or_iat_fails_on_a_hit_as_uncached(
    pair: Callable[..., tuple[Revocast, Revocast, InMemorySource]],
    clock: FakeClock,
    claim: str,
) -> None:
    cached, plain, _ = pair(leeway=10)
    start = int(clock.now)
    if claim == "nbf":  # issued a minute earlier, valid from start
        tok = token(at=start - 60, lifetime=600, jti="n", nbf=start)
    else:
        tok = token(at=start, lifetime=600, jti="n")
    assert outcome(cached, tok) == outcome(plain, tok) == ("ok", "n")
    clock.now = start - 10  # within the leeway: still fine
    assert outcome(cached, tok) == outcome(plain, tok) == ("ok", "n")
    clock.now = start - 10.5  # NTP stepped the clock back past the leeway
    assert outcome(cached, tok) == outcome(plain, tok)
    assert outcome(cached, tok) == (
        "ImmatureSignatureError",
        f"The token is not yet valid ({claim})",
    )
    assert cache_of(cached).hits >= 2


def test_a_token_revoked_after_it_was_cached_is_refused_on_the_next_hit(
    pair: Callable[..., tuple[Revocast, Revocast, InMemorySource]], clock: FakeClock
) -> None:
    cached, plain, src = pair()
    tok = token(jti="r", sub="bob")
    assert outcome(cached, tok) == ("ok", "r")
    src.publish(
        TokenRevoked(issuer="i", jti="r", occurred_at=dt(clock.now), expires_at=dt(clock.now + 600))
    )
    assert outcome(cached, tok) == outcome(plain, tok)
    with pytest.raises(TokenRevokedError, match="jti=r"):
        cached.verify(tok)


def test_a_blocked_subject_and_a_revoked_key_apply_to_cached_tokens(
    pair: Callable[..., tuple[Revocast, Revocast, InMemorySource]], clock: FakeClock
) -> None:
    cached, plain, src = pair()
    alice, bob = token(sub="alice", jti="a"), token(sub="bob", jti="b")
    assert outcome(cached, alice) == ("ok", "a")
    assert outcome(cached, bob) == ("ok", "b")
    src.publish(SubjectBlocked(issuer="i", sub="alice", occurred_at=dt(clock.now)))
    assert outcome(cached, alice) == outcome(plain, alice)
    assert outcome(cached, alice)[0] == "TokenRevokedError"
    assert outcome(cached, bob) == ("ok", "b")
    src.publish(KeyRevoked(issuer="i", kid="k1", occurred_at=dt(clock.now)))
    assert outcome(cached, bob) == outcome(plain, bob)
    with pytest.raises(TokenRevokedError, match="kid=k1"):
        cached.verify(bob)


def test_fail_closed_status_is_honoured_on_a_hit(
    pair: Callable[..., tuple[Revocast, Revocast, InMemorySource]], clock: FakeClock
) -> None:
    cached, plain, src = pair(max_staleness=30)
    tok = token(jti="s")
    assert outcome(cached, tok) == ("ok", "s")
    src.interrupt("broker gone")
    clock.advance(31)
    assert outcome(cached, tok) == outcome(plain, tok)
    with pytest.raises(StateUnavailableError, match="interrupted"):
        cached.verify(tok)
    assert cache_of(cached).hits == 2


def test_only_successful_verifications_are_cached(clock: FakeClock) -> None:
    rc, src = _make(clock, verify_cache_size=SIZE)
    cache = cache_of(rc)
    with pytest.raises(jwt.InvalidSignatureError):
        rc.verify(token(key=b"z" * 32))
    with pytest.raises(RevocastTokenError, match="must be a number"):
        rc.verify(token(exp=str(int(clock.now) + 600)))
    with pytest.raises(RevocastTokenError, match="exceeds"):
        rc.verify(token(pad="x" * 9000))
    src.publish(SubjectBlocked(issuer="i", sub="carol", occurred_at=dt(clock.now)))
    carol = token(sub="carol", jti="c")
    with pytest.raises(TokenRevokedError):
        rc.verify(carol)
    assert len(cache) == 0
    src.publish(
        SubjectUnblocked(
            issuer="i", sub="carol", occurred_at=dt(clock.now + 1), expires_at=dt(clock.now + 3600)
        )
    )
    assert rc.verify(carol)["jti"] == "c"
    assert len(cache) == 1


def test_a_refusal_while_the_state_is_unavailable_is_not_cached(clock: FakeClock) -> None:
    src = InMemorySource()
    rc = Revocast(settings(verify_cache_size=SIZE), source=src, clock=clock)
    tok = token()
    with pytest.raises(StateUnavailableError):
        rc.verify(tok)
    assert len(cache_of(rc)) == 0
    rc.close()


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(clock: FakeClock) -> None:
    rc, _ = _make(clock, verify_cache_size=2)
    cache = cache_of(rc)
    a, b, c = token(jti="a"), token(jti="b"), token(jti="c")
    rc.verify(a)
    rc.verify(b)
    rc.verify(a)  # a is now the most recently used
    rc.verify(c)  # evicts b
    assert len(cache) == 2
    hits = cache.hits
    rc.verify(a)
    rc.verify(c)
    assert cache.hits == hits + 2
    rc.verify(b)
    assert cache.hits == hits + 2
    rc.close()


def test_callers_get_their_own_copy_of_the_claims(clock: FakeClock) -> None:
    rc, _ = _make(clock, verify_cache_size=SIZE)
    tok = token(jti="m", roles=["reader"], ctx={"tenant": "t1", "groups": ["g"]})
    first = rc.verify(tok)
    first["roles"].append("admin")
    first["sub"] = "mallory"
    second = rc.verify(tok)
    second["ctx"]["groups"].append("admins")
    second["ctx"]["tenant"] = "t2"
    third = rc.verify(tok)
    assert third["roles"] == ["reader"]
    assert third["sub"] == "alice"
    assert third["ctx"] == {"tenant": "t1", "groups": ["g"]}
    assert cache_of(rc).hits == 2
    rc.close()


def test_a_result_decoded_before_a_key_change_is_not_cached() -> None:
    clock = FakeClock()
    cache = VerifyCache(SIZE, clock=clock)
    claims = {"jti": "x", "iat": int(clock.now), "exp": int(clock.now) + 60}
    generation = cache.generation  # a request reads it, then decodes with the old keys...
    cache.clear()  # ...while the JWKS refresh changes the key set
    cache.put(b"tok", claims, None, generation)
    assert cache.get(b"tok") is None
    cache.put(b"tok", claims, None, cache.generation)
    assert cache.get(b"tok") is not None


def test_a_forked_child_starts_with_an_empty_cache_and_a_fresh_lock(clock: FakeClock) -> None:
    cache = VerifyCache(SIZE, clock=clock)
    cache.put(b"tok", {"iat": int(clock.now), "exp": int(clock.now) + 60}, None, 0)
    lock = cache._lock
    lock.acquire()  # as if another thread held it at fork time
    cache._after_fork_in_child()
    assert cache._lock is not lock
    assert len(cache) == 0
    lock.release()


# -- settings ------------------------------------------------------------------------------


def test_verify_cache_size_must_be_a_non_negative_integer() -> None:
    for bad in (-1, 1.5, True, "10"):
        with pytest.raises(SettingsError, match="verify_cache_size"):
            settings(verify_cache_size=bad)
    assert settings(verify_cache_size=0).verify_cache_size == 0


# -- JWKS ----------------------------------------------------------------------------------


def _oct(kid: str, secret: bytes) -> dict[str, str]:
    k = base64.urlsafe_b64encode(secret).rstrip(b"=").decode()
    return {"kty": "oct", "kid": kid, "k": k, "alg": "HS256"}


class _Jwks:
    """A JWKS endpoint on loopback whose key set the test changes."""

    def __init__(self) -> None:
        self.keys: list[dict[str, str]] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def jwks() -> Iterator[_Jwks]:
    server = _Jwks()
    yield server
    server.close()


def test_a_jwks_change_clears_the_cache_so_a_removed_key_stops_working(
    jwks: _Jwks, clock: FakeClock
) -> None:
    old, new = b"o" * 32, b"n" * 32
    jwks.keys = [_oct("old", old), _oct("new", new)]
    s = ConsumerSettings(
        algorithms=("HS256",),
        jwks_url=jwks.url,
        event_keys=event_keys(),
        verify_cache_size=SIZE,
        heartbeat_interval=0,
    )
    src = InMemorySource()
    rc = Revocast(s, source=src, clock=clock)
    try:
        src.set_ready()
        assert rc.wait_until_ready(10)
        cache = cache_of(rc)
        keys = rc._verifier.jwks
        assert keys is not None
        by_old, by_new = token(key=old, kid="old", jti="o"), token(key=new, kid="new", jti="n")
        assert rc.verify(by_old)["jti"] == "o"
        assert rc.verify(by_new)["jti"] == "n"
        keys.refresh()  # the same key set: the cache is kept
        assert len(cache) == 2
        generation = cache.generation
        jwks.keys = [_oct("new", new)]
        keys.refresh()
        assert cache.generation == generation + 1
        assert len(cache) == 0
        with pytest.raises(RevocastTokenError, match="unknown key id 'old'"):
            rc.verify(by_old)
        assert rc.verify(by_new)["jti"] == "n"
        jwks.keys = [_oct("new", b"r" * 32)]  # same kid, new material: also a change
        keys.refresh()
        with pytest.raises(jwt.InvalidSignatureError):
            rc.verify(by_new)
    finally:
        rc.close()


def test_verify_cache_with_static_keys_never_needs_clearing(clock: FakeClock) -> None:
    rc, _ = _make(clock, verify_cache_size=SIZE, jwt_keys={"k1": SECRET, "k2": b"t" * 32})
    tok = token(kid="k2", key=b"t" * 32, jti="k2")
    assert rc.verify(tok)["jti"] == "k2"
    assert rc.verify(tok)["jti"] == "k2"
    assert cache_of(rc).generation == 0
    assert cache_of(rc).hits == 1
    with pytest.raises(RevocastTokenError, match="unknown key id"):
        rc.verify(token(kid="k9"))
    rc.close()
