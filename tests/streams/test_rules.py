"""The pure rule logic: which key an event sets and which event wins it."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consumer_sdk import RevocationState
from revocation_events import (
    Event,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)
from streams import Outcome, Rule, merge, rank, rule_key
from tests.streams._support import T0, at, rule, uid

NOW = T0.timestamp()
LATER = at(3600)


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (TokenRevoked(issuer="i", jti="j1", sub="u", expires_at=LATER), "jti:j1"),
        (SessionRevoked(issuer="i", sid="s1", expires_at=LATER), "sid:s1"),
        (
            SubjectTokensRevoked(issuer="i", sub="u", issued_before=T0, expires_at=LATER),
            "sub-wm:u",
        ),
        (SubjectBlocked(issuer="i", sub="u"), "sub-block:u"),
        (SubjectUnblocked(issuer="i", sub="u", expires_at=LATER), "sub-block:u"),
        (SubjectDeleted(issuer="i", sub="u", expires_at=LATER), "sub-del:u"),
        (SubjectVersionBumped(issuer="i", sub="u", min_version=3, expires_at=LATER), "sub-ver:u"),
        (KeyRevoked(issuer="i", kid="k1"), "kid:k1"),
        (
            GlobalTokensRevoked(issuer="i", issued_before=T0, occurred_at=T0, expires_at=LATER),
            "global",
        ),
    ],
)
def test_each_event_kind_sets_its_rule_key(event: Event, key: str) -> None:
    assert rule_key(event) == key


def _wm(n: int, issued_before: float, expires: float = 3600) -> Rule:
    return rule(
        SubjectTokensRevoked(
            id=uid(n),
            issuer="i",
            sub="u",
            occurred_at=T0,
            issued_before=at(issued_before),
            expires_at=at(expires),
        )
    )


def _block(n: int, occurred: float) -> Rule:
    return rule(SubjectBlocked(id=uid(n), issuer="i", sub="u", occurred_at=at(occurred)))


def _unblock(n: int, occurred: float, expires: float = 3600) -> Rule:
    return rule(
        SubjectUnblocked(
            id=uid(n), issuer="i", sub="u", occurred_at=at(occurred), expires_at=at(expires)
        )
    )


def _ver(n: int, version: int) -> Rule:
    return rule(
        SubjectVersionBumped(
            id=uid(n), issuer="i", sub="u", occurred_at=T0, min_version=version, expires_at=LATER
        )
    )


def _jti(n: int, expires: float) -> Rule:
    return rule(
        TokenRevoked(id=uid(n), issuer="i", jti="j", occurred_at=T0, expires_at=at(expires))
    )


def test_first_event_of_a_rule_becomes_its_winner() -> None:
    new = _wm(1, -10)
    assert merge(None, new, NOW).outcome is Outcome.REPLACED
    assert merge(None, new, NOW).winner == new


def test_watermark_keeps_the_latest_issued_before_whatever_the_arrival_order() -> None:
    old, new = _wm(1, -100), _wm(2, -10)
    assert merge(old, new, NOW).winner == new
    assert merge(new, old, NOW).outcome is Outcome.SUPERSEDED
    assert merge(new, old, NOW).winner == new


def test_version_bump_keeps_the_highest_min_version() -> None:
    assert merge(_ver(1, 7), _ver(2, 3), NOW).winner == _ver(1, 7)
    assert merge(_ver(1, 3), _ver(2, 7), NOW).winner == _ver(2, 7)


def test_token_revocation_keeps_the_longest_expiry() -> None:
    assert merge(_jti(1, 600), _jti(2, 60), NOW).winner == _jti(1, 600)


def test_later_unblock_replaces_a_block_and_is_kept_as_the_rule() -> None:
    result = merge(_block(1, -20), _unblock(2, -10), NOW)
    assert result.outcome is Outcome.REPLACED
    assert isinstance(result.winner and result.winner.event, SubjectUnblocked)


def test_block_older_than_the_remembered_unblock_does_not_reblock() -> None:
    assert merge(_unblock(2, -10), _block(1, -20), NOW).outcome is Outcome.SUPERSEDED


def test_block_after_an_unblock_blocks_again() -> None:
    assert merge(_unblock(1, -20), _block(2, -10), NOW).winner == _block(2, -10)


def test_redelivered_winner_is_a_duplicate() -> None:
    winner = _wm(1, -10)
    assert merge(winner, _wm(1, -10), NOW).outcome is Outcome.DUPLICATE


def test_event_past_its_expiry_is_ignored_and_keeps_the_live_winner() -> None:
    live = _jti(1, 600)
    result = merge(live, _jti(2, -1), NOW)
    assert result.outcome is Outcome.EXPIRED
    assert result.winner == live


def test_expired_winner_counts_as_absent() -> None:
    result = merge(_jti(1, -1), _jti(2, 60), NOW)
    assert result.outcome is Outcome.REPLACED
    assert result.winner == _jti(2, 60)


def test_block_without_expiry_never_expires() -> None:
    assert not _block(1, -10).expired(float("inf") - 1)


def test_merging_rules_of_different_keys_is_refused() -> None:
    with pytest.raises(ValueError, match="rule keys differ"):
        merge(_jti(1, 60), _wm(2, 0), NOW)


_RULES = [_block(1, -30), _unblock(2, -20), _block(3, -10), _unblock(4, -5), _block(5, -40)]


@given(st.permutations(range(len(_RULES))))
def test_block_winner_does_not_depend_on_arrival_order(order: list[int]) -> None:
    winner: Rule | None = None
    for index in order:
        winner = merge(winner, _RULES[index], NOW).winner
    assert winner == _unblock(4, -5)


def test_watermark_winner_does_not_depend_on_arrival_order() -> None:
    rules = [_wm(1, -50), _wm(2, -5, 100), _wm(3, -5, 200), _wm(4, -70)]
    winners = set()
    for order in itertools.permutations(rules):
        winner: Rule | None = None
        for new in order:
            winner = merge(winner, new, NOW).winner
        winners.add(winner)
    assert winners == {rules[2]}


# -- the worker's winner is what the SDK keeps ---------------------------------------------

LIFETIME = 3600.0
_KINDS = ("jti", "sid", "sub-wm", "sub-block", "sub-del", "sub-ver", "kid", "global")


@st.composite
def _events_of_one_rule(draw: st.DrawFn, kind: str, consistent: bool = True) -> list[Event]:
    """A multiset of events of one rule (re-sent duplicates included). ``consistent``: as a
    producer with the SDK's lifetime writes them (``expires_at >= start + LIFETIME``, one
    ``expires_at`` per jti); otherwise any ``expires_at``."""
    jti_exp = draw(st.floats(-600, 7200))
    pool: list[Event] = []
    for n in range(draw(st.integers(1, 6))):
        occurred = draw(st.floats(-7200, 600))
        issued = occurred - draw(st.floats(0, 300))
        extra = draw(st.floats(-2 * LIFETIME, LIFETIME) if not consistent else st.floats(0, 600))
        start = issued if kind in ("sub-wm", "global") else occurred
        exp = at(start + LIFETIME + extra)
        common: dict[str, Any] = {"id": uid(n + 1), "issuer": "i", "occurred_at": at(occurred)}
        event: Event
        if kind == "jti":
            e = at(jti_exp) if consistent else exp
            event = TokenRevoked(**common, jti="j", sub="u", expires_at=e)
        elif kind == "sid":
            event = SessionRevoked(**common, sid="s", expires_at=exp)
        elif kind == "sub-wm":
            event = SubjectTokensRevoked(
                **common, sub="u", issued_before=at(issued), expires_at=exp
            )
        elif kind == "sub-block":
            if draw(st.booleans()):
                event = SubjectBlocked(**common, sub="u")
            else:
                event = SubjectUnblocked(**common, sub="u", expires_at=exp)
        elif kind == "sub-del":
            event = SubjectDeleted(**common, sub="u", expires_at=exp)
        elif kind == "sub-ver":
            version = draw(st.integers(0, 4))
            event = SubjectVersionBumped(**common, sub="u", min_version=version, expires_at=exp)
        elif kind == "kid":
            event = KeyRevoked(**common, kid="k")
        else:
            event = GlobalTokensRevoked(**common, issued_before=at(issued), expires_at=exp)
        pool.append(event)
    picks = draw(st.lists(st.sampled_from(pool), min_size=len(pool), max_size=3 * len(pool)))
    return [*pool, *picks[len(pool) :]]


def _sdk(now: float) -> RevocationState:
    return RevocationState(clock=lambda: now, max_token_lifetime=LIFETIME)


def _worker_winner(events: list[Event], now: float) -> Event | None:
    winner: Rule | None = None
    for event in events:
        winner = merge(winner, Rule(event, b"", None), now).winner
    return None if winner is None else winner.event


@hsettings(deadline=None, max_examples=300)
@given(kind=st.sampled_from(_KINDS), data=st.data())
def test_sdk_applying_the_worker_winner_equals_the_sdk_applying_every_event(
    kind: str, data: st.DataObject
) -> None:
    events = data.draw(_events_of_one_rule(kind))
    now = NOW + data.draw(st.floats(-60, 2 * LIFETIME))
    every = _sdk(now)
    for event in data.draw(st.permutations(events)):
        every.apply(event)
    winner = _worker_winner(data.draw(st.permutations(events)), now)
    only_winner = _sdk(now)
    if winner is not None:
        only_winner.apply(winner)
    assert only_winner.snapshot() == every.snapshot()


def _probes(events: list[Event], t: float) -> list[tuple[dict[str, object], str | None]]:
    """Tokens still valid at ``t`` (lifetime ``LIFETIME``) that some event, by its own
    ``expires_at``, still revokes at ``t``."""
    probes: list[tuple[dict[str, object], str | None]] = []
    for event in events:
        if event.expires_at is not None and event.expires_at.timestamp() <= t:
            continue
        iat = t - LIFETIME + 1  # the oldest token still valid at t
        base: dict[str, object] = {"sub": "u", "jti": "other", "iat": iat}
        match event:
            case TokenRevoked() | SessionRevoked() | SubjectDeleted() | SubjectBlocked():
                probes.append(({**base, "jti": "j", "sid": "s"}, None))
            case SubjectTokensRevoked() | GlobalTokensRevoked():
                limit = event.issued_before.timestamp()
                if iat < limit:
                    probes.append(({**base, "iat": (iat + limit) / 2}, None))
            case SubjectVersionBumped():
                # The issuer stamps every token with at least the newest bump before it.
                floor = max(
                    (
                        e.min_version
                        for e in events
                        if isinstance(e, SubjectVersionBumped) and e.occurred_at.timestamp() <= iat
                    ),
                    default=0,
                )
                if floor < event.min_version:
                    probes.append(({**base, "ver": floor}, None))
            case KeyRevoked():
                probes.append((base, event.kid))
    return probes


@hsettings(deadline=None, max_examples=300)
@given(kind=st.sampled_from(_KINDS), data=st.data())
def test_the_winner_revokes_every_valid_token_any_event_still_revokes(
    kind: str, data: st.DataObject
) -> None:
    """Never weaker than the log: with any ``expires_at`` (not just a producer's), a token
    still valid at ``t`` that some event revokes until its ``expires_at`` is refused by an
    SDK holding only the worker's winner."""
    events = data.draw(_events_of_one_rule(kind, consistent=False))
    if kind == "sub-block":
        # Last writer wins: an unblock lifts older blocks by design.
        latest = max(events, key=lambda e: (e.occurred_at, str(e.id)))
        events = [e for e in events if not isinstance(latest, SubjectUnblocked) or e is latest]
    t = NOW + data.draw(st.floats(-60, 2 * LIFETIME))
    winner = _worker_winner(events, t)
    state = _sdk(t)
    if winner is not None:
        state.apply(winner)
    for claims, kid in _probes(events, t):
        assert state.check(claims, kid) is not None, (claims, winner)


def test_block_outranks_an_unblock_tied_on_time_and_id() -> None:
    """Fail safe and arrival-order independent, as the SDK (a full tie needs a reused id)."""
    block = SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=T0)
    unblock = SubjectUnblocked(id=uid(1), issuer="i", sub="u", occurred_at=T0, expires_at=LATER)
    assert rank(block) > rank(unblock)


@pytest.mark.parametrize(
    "event",
    [
        SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-120), expires_at=at(-60)),
        KeyRevoked(id=uid(1), issuer="i", kid="k", occurred_at=at(-120), expires_at=at(-60)),
    ],
)
def test_a_block_or_key_revocation_carrying_expires_at_still_never_expires(event: Event) -> None:
    """The wire format lets any event carry ``expires_at`` and the codec accepts it; the SDK
    keeps blocks and revoked keys forever whatever it says. A worker that expired them
    would tombstone them while a log replay still refuses the tokens."""
    every = _sdk(NOW)
    every.apply(event)
    winner = _worker_winner([event], NOW)
    only_winner = _sdk(NOW)
    if winner is not None:
        only_winner.apply(winner)
    assert only_winner.snapshot() == every.snapshot()
    assert Rule(event, b"", None).expires_at is None
