"""The pure rule logic: which key an event sets and which event wins it."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
from streams import Outcome, Rule, merge, rule_key
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
