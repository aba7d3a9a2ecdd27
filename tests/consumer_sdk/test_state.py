"""RevocationState: every rule, expiry with an injected clock, and order independence."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from pydantic import AwareDatetime, TypeAdapter

from consumer_sdk import RevocationState, RevokedBy
from consumer_sdk._state import _PYD_UTC, _ts
from revocation_events import (
    BaseEvent,
    EventCodec,
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
from tests.consumer_sdk._helpers import FakeClock, dt

T0 = 1_800_000_000.0
LIFETIME = 3600.0


def make_state(clock: FakeClock, *, grace: float = 0.0) -> RevocationState:
    return RevocationState(clock=clock, max_token_lifetime=LIFETIME, grace=grace)


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"sub": "alice", "jti": "j-1", "iat": int(T0), "exp": int(T0 + 600)}
    base.update(extra)
    return base


def rule(state: RevocationState, c: dict[str, Any], kid: str | None = None) -> RevokedBy | None:
    hit = state.check(c, kid)
    return None if hit is None else hit[0]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def test_revoked_jti_refuses_that_token_only_until_its_expiry(clock: FakeClock) -> None:
    state = make_state(clock)
    assert state.apply(
        TokenRevoked(issuer="i", jti="j-1", expires_at=dt(T0 + 600), occurred_at=dt(T0))
    )
    assert rule(state, claims()) is RevokedBy.JTI
    assert rule(state, claims(jti="j-2")) is None
    clock.advance(601)
    assert rule(state, claims()) is None, "an entry past its expiry is ignored before expire()"
    assert state.expire() == 1
    assert state.size_by_kind()["jti"] == 0


def test_jti_entry_outlives_expiry_by_the_grace_for_leeway(clock: FakeClock) -> None:
    state = make_state(clock, grace=30)
    state.apply(TokenRevoked(issuer="i", jti="j-1", expires_at=dt(T0 + 600)))
    clock.advance(620)
    assert rule(state, claims()) is RevokedBy.JTI
    assert state.expire() == 0
    clock.advance(20)
    assert state.expire() == 1


def test_revoked_jti_reports_when_it_was_revoked(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(TokenRevoked(issuer="i", jti="j-1", expires_at=dt(T0 + 60), occurred_at=dt(T0 - 5)))
    assert state.check(claims(), None) == (RevokedBy.JTI, dt(T0 - 5))


def test_already_expired_jti_event_is_not_stored(clock: FakeClock) -> None:
    state = make_state(clock)
    assert not state.apply(TokenRevoked(issuer="i", jti="j-1", expires_at=dt(T0 - 1)))
    assert state.size_by_kind()["jti"] == 0


def test_many_jtis_survive_table_growth_and_expire_by_bucket(clock: FakeClock) -> None:
    state = make_state(clock)
    for n in range(5000):
        state.apply(TokenRevoked(issuer="i", jti=f"j{n}", expires_at=dt(T0 + 60 + n)))
    assert all(rule(state, claims(jti=f"j{n}")) is RevokedBy.JTI for n in range(0, 5000, 7))
    clock.advance(60 + 2500)
    dropped = state.expire()
    assert 2300 < dropped <= 2501
    assert rule(state, claims(jti="j4999")) is RevokedBy.JTI
    assert rule(state, claims(jti="j10")) is None


def test_revoked_sid_refuses_every_token_of_the_session_until_expiry(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(SessionRevoked(issuer="i", sid="s-1", expires_at=dt(T0 + 100), occurred_at=dt(T0)))
    assert rule(state, claims(sid="s-1")) is RevokedBy.SID
    assert rule(state, claims(sid="s-2")) is None
    clock.advance(LIFETIME + 1)
    assert rule(state, claims(sid="s-1")) is None
    assert state.expire() == 1


def test_subject_watermark_refuses_older_tokens_and_drops_off_after_t_plus_lifetime(
    clock: FakeClock,
) -> None:
    state = make_state(clock)
    state.apply(
        SubjectTokensRevoked(
            issuer="i", sub="alice", issued_before=dt(T0), expires_at=dt(T0 + LIFETIME)
        )
    )
    assert rule(state, claims(iat=int(T0) - 1)) is RevokedBy.SUBJECT_WATERMARK
    assert rule(state, claims(iat=int(T0))) is None
    assert rule(state, claims(sub="bob", iat=int(T0) - 1)) is None
    clock.advance(LIFETIME - 1)
    assert rule(state, claims(iat=int(T0) - 1)) is RevokedBy.SUBJECT_WATERMARK
    clock.advance(2)
    assert rule(state, claims(iat=int(T0) - 1)) is None
    assert state.expire() == 1
    assert state.snapshot()[2] == ()


def test_subject_watermark_only_moves_forward(clock: FakeClock) -> None:
    state = make_state(clock)
    late = SubjectTokensRevoked(
        issuer="i", sub="alice", issued_before=dt(T0), expires_at=dt(T0 + 60)
    )
    early = SubjectTokensRevoked(
        issuer="i", sub="alice", issued_before=dt(T0 - 100), expires_at=dt(T0 + 60)
    )
    state.apply(late)
    assert not state.apply(early)
    assert rule(state, claims(iat=int(T0) - 50)) is RevokedBy.SUBJECT_WATERMARK


def _block(at: float, *, blocked: bool = True) -> BaseEvent:
    if blocked:
        return SubjectBlocked(issuer="i", sub="alice", occurred_at=dt(at))
    return SubjectUnblocked(issuer="i", sub="alice", occurred_at=dt(at), expires_at=dt(at + 60))


@pytest.mark.parametrize("reverse", [False, True], ids=["in_order", "reversed"])
def test_block_then_unblock_in_any_order_ends_unblocked(clock: FakeClock, reverse: bool) -> None:
    events = [_block(T0), _block(T0 + 1, blocked=False)]
    state = make_state(clock)
    for event in reversed(events) if reverse else events:
        state.apply(event)  # type: ignore[arg-type]
    assert rule(state, claims()) is None


@pytest.mark.parametrize("reverse", [False, True], ids=["block_first", "unblock_first"])
def test_block_and_unblock_tied_on_time_and_id_end_blocked_in_any_order(
    clock: FakeClock, reverse: bool
) -> None:
    same: dict[str, Any] = {
        "issuer": "i",
        "sub": "alice",
        "occurred_at": dt(T0),
        "id": uuid.UUID(int=7),
    }
    events: list[Any] = [
        SubjectBlocked(**same),
        SubjectUnblocked(**same, expires_at=dt(T0 + 60)),
    ]
    state = make_state(clock)
    for event in reversed(events) if reverse else events:
        state.apply(event)
    assert rule(state, claims()) is RevokedBy.BLOCKED


def test_replayed_old_unblock_does_not_lift_a_newer_block(clock: FakeClock) -> None:
    state = make_state(clock)
    old_unblock = _block(T0 - 10, blocked=False)
    state.apply(_block(T0 - 20))  # type: ignore[arg-type]
    state.apply(old_unblock)  # type: ignore[arg-type]
    state.apply(_block(T0))  # type: ignore[arg-type]
    assert not state.apply(old_unblock)  # type: ignore[arg-type]
    assert rule(state, claims()) is RevokedBy.BLOCKED


def test_block_lasts_past_every_lifetime_until_unblocked(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(_block(T0))  # type: ignore[arg-type]
    clock.advance(100 * LIFETIME)
    state.expire()
    assert rule(state, claims()) is RevokedBy.BLOCKED


def test_deleted_subject_stays_refused_even_after_an_unblock(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(SubjectDeleted(issuer="i", sub="alice", occurred_at=dt(T0), expires_at=dt(T0 + 60)))
    state.apply(_block(T0 + 1, blocked=False))  # type: ignore[arg-type]
    assert rule(state, claims()) is RevokedBy.DELETED
    clock.advance(LIFETIME + 1)
    assert rule(state, claims()) is None


def test_version_bump_refuses_lower_versions_and_never_rolls_back(clock: FakeClock) -> None:
    state = make_state(clock)
    high = SubjectVersionBumped(issuer="i", sub="alice", min_version=5, expires_at=dt(T0 + 60))
    low = SubjectVersionBumped(issuer="i", sub="alice", min_version=3, expires_at=dt(T0 + 60))
    state.apply(high)
    assert not state.apply(low)
    assert rule(state, claims(ver=4)) is RevokedBy.VERSION
    assert rule(state, claims(ver=5)) is None
    assert rule(state, claims()) is RevokedBy.VERSION, "a token without the claim is version 0"
    assert rule(state, claims(ver="9")) is RevokedBy.VERSION, "a non-integer version is refused"


def test_version_claim_name_is_configurable(clock: FakeClock) -> None:
    state = RevocationState(clock=clock, max_token_lifetime=LIFETIME, version_claim="perm_v")
    state.apply(SubjectVersionBumped(issuer="i", sub="alice", min_version=2, expires_at=dt(T0 + 9)))
    assert rule(state, claims(perm_v=2, ver=0)) is None
    assert rule(state, claims(perm_v=1, ver=7)) is RevokedBy.VERSION


def test_revoked_key_refuses_its_tokens_forever(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(KeyRevoked(issuer="i", kid="k-old"))
    clock.advance(1000 * LIFETIME)
    assert state.expire() == 0
    assert rule(state, claims(), "k-old") is RevokedBy.KEY
    assert rule(state, claims(), "k-new") is None
    assert rule(state, claims(), None) is None


def test_global_watermark_takes_the_max_and_expires(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(
        GlobalTokensRevoked(
            issuer="i", occurred_at=dt(T0), issued_before=dt(T0), expires_at=dt(T0 + 60)
        )
    )
    assert not state.apply(
        GlobalTokensRevoked(
            issuer="i", occurred_at=dt(T0), issued_before=dt(T0 - 9), expires_at=dt(T0 + 60)
        )
    )
    assert rule(state, claims(sub="anyone", iat=int(T0) - 1)) is RevokedBy.GLOBAL
    assert rule(state, claims(iat=int(T0))) is None
    clock.advance(LIFETIME + 1)
    assert rule(state, claims(iat=int(T0) - 1)) is None
    assert state.expire() == 1


def test_token_without_iat_counts_as_older_than_any_watermark(clock: FakeClock) -> None:
    state = make_state(clock)
    state.apply(
        GlobalTokensRevoked(
            issuer="i", occurred_at=dt(T0), issued_before=dt(T0), expires_at=dt(T0 + 60)
        )
    )
    assert rule(state, claims(iat=None)) is RevokedBy.GLOBAL


def test_applying_an_event_twice_changes_nothing_the_second_time(clock: FakeClock) -> None:
    state = make_state(clock)
    event = SessionRevoked(issuer="i", sid="s", expires_at=dt(T0 + 60))
    assert state.apply(event)
    before = state.snapshot()
    assert not state.apply(event)
    assert state.snapshot() == before


# -- properties ------------------------------------------------------------------------------

_SUBJECTS = ["alice", "bob"]


@st.composite
def subject_events(draw: st.DrawFn) -> list[BaseEvent]:
    """A history of events, each with a distinct occurred_at, for a couple of subjects."""
    n = draw(st.integers(min_value=1, max_value=12))
    offsets = draw(st.lists(st.integers(-500, 500), min_size=n, max_size=n, unique=True))
    events: list[BaseEvent] = []
    for off in offsets:
        at = dt(T0 + off)
        sub = draw(st.sampled_from(_SUBJECTS))
        kind = draw(st.integers(0, 7))
        exp = dt(T0 + off + draw(st.integers(1, 2 * int(LIFETIME))))
        if kind == 0:
            events.append(SubjectBlocked(issuer="i", sub=sub, occurred_at=at))
        elif kind == 1:
            events.append(SubjectUnblocked(issuer="i", sub=sub, occurred_at=at, expires_at=exp))
        elif kind == 2:
            events.append(
                SubjectTokensRevoked(
                    issuer="i", sub=sub, occurred_at=at, issued_before=at, expires_at=exp
                )
            )
        elif kind == 3:
            events.append(SubjectDeleted(issuer="i", sub=sub, occurred_at=at, expires_at=exp))
        elif kind == 4:
            v = draw(st.integers(0, 5))
            events.append(
                SubjectVersionBumped(
                    issuer="i", sub=sub, occurred_at=at, min_version=v, expires_at=exp
                )
            )
        elif kind == 5:
            events.append(
                TokenRevoked(issuer="i", jti=uuid.uuid4().hex[:4], occurred_at=at, expires_at=exp)
            )
        elif kind == 6:
            events.append(SessionRevoked(issuer="i", sid=sub, occurred_at=at, expires_at=exp))
        else:
            events.append(
                GlobalTokensRevoked(issuer="i", occurred_at=at, issued_before=at, expires_at=exp)
            )
    return events


@hsettings(deadline=None, max_examples=60)
@given(events=subject_events(), data=st.data())
def test_any_order_of_the_same_events_gives_the_same_snapshot(
    events: list[BaseEvent], data: st.DataObject
) -> None:
    clock = FakeClock(T0)
    reference = make_state(clock)
    for event in events:
        reference.apply(event)  # type: ignore[arg-type]
    shuffled = data.draw(st.permutations(events))
    other = make_state(clock)
    for event in shuffled:
        other.apply(event)  # type: ignore[arg-type]
    assert other.snapshot() == reference.snapshot()
    for sub in _SUBJECTS:
        for iat in (int(T0) - 600, int(T0), int(T0) + 600):
            c = claims(sub=sub, iat=iat, ver=2, sid=sub)
            assert other.check(c, None) == reference.check(c, None)


@hsettings(deadline=None, max_examples=40)
@given(events=subject_events())
def test_applying_every_event_again_changes_nothing(events: list[BaseEvent]) -> None:
    clock = FakeClock(T0)
    state = make_state(clock)
    for event in events:
        state.apply(event)  # type: ignore[arg-type]
    before = state.snapshot()
    assert not any(state.apply(e) for e in events)  # type: ignore[arg-type]
    assert state.snapshot() == before


@hsettings(deadline=None, max_examples=30)
@given(events=subject_events(), later=st.integers(0, 3 * int(LIFETIME)))
def test_expire_never_changes_what_check_answers(events: list[BaseEvent], later: int) -> None:
    clock = FakeClock(T0)
    state = make_state(clock)
    for event in events:
        state.apply(event)  # type: ignore[arg-type]
    clock.advance(later)
    probes = [
        claims(sub=s, iat=i, ver=1, sid=s) for s in _SUBJECTS for i in (int(T0) - 900, int(T0))
    ]
    before = [state.check(c, None) for c in probes]
    state.expire()
    assert [state.check(c, None) for c in probes] == before


@hsettings(deadline=None, max_examples=60)
@given(
    events=subject_events(),
    key=st.booleans(),
    steps=st.lists(st.integers(0, 2 * int(LIFETIME)), max_size=4),
)
def test_check_skips_the_other_rules_only_when_the_state_holds_none(
    events: list[BaseEvent], key: bool, steps: list[int]
) -> None:
    """``check`` tests one flag for every sid, subject, key and global rule; it must be set
    exactly when the state holds one of them, after each apply and each expire."""
    clock = FakeClock(T0)
    state = make_state(clock)

    def holds_others() -> bool:
        return any(n for kind, n in state.size_by_kind().items() if kind != "jti")

    assert state._others is holds_others() is False
    for event in [*events, *([KeyRevoked(issuer="i", kid="k1")] if key else [])]:
        state.apply(event)  # type: ignore[arg-type]
        assert state._others is holds_others()
    for later in steps:
        clock.advance(later)
        state.expire()
        assert state._others is holds_others()


@hsettings(deadline=None, max_examples=60)
@given(
    events=subject_events(),
    steps=st.lists(st.integers(0, 2 * int(LIFETIME)), max_size=4),
)
def test_subject_rule_counts_are_those_of_the_records_after_every_apply_and_expire(
    events: list[BaseEvent], steps: list[int]
) -> None:
    """The counts are kept as records change (counting them walked every subject on the
    sync thread); they must equal a count of the records themselves at every step."""
    clock = FakeClock(T0)
    state = make_state(clock)

    def counted() -> dict[str, int]:
        recs = list(state._subjects.values())
        return {
            "subject_watermark": sum(r.watermark is not None for r in recs),
            "blocked": sum(r.block is not None and r.block.blocked for r in recs),
            "unblocked": sum(r.block is not None and not r.block.blocked for r in recs),
            "deleted": sum(r.deleted is not None for r in recs),
            "version": sum(r.version is not None for r in recs),
        }

    def kept() -> dict[str, int]:
        sizes = state.size_by_kind()
        return {kind: sizes[kind] for kind in counted()}

    for event in events:
        state.apply(event)  # type: ignore[arg-type]
        assert kept() == counted()
    for later in steps:
        clock.advance(later)
        state.expire()
        assert kept() == counted()
    assert all(n >= 0 for n in kept().values())


# -- jtis against a dict model ---------------------------------------------------------------

_JTIS = [f"j{n}" for n in range(40)]  # enough to grow the table past its first 64 slots
_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("revoke"),
            st.sampled_from(_JTIS),
            st.floats(-200, 400, allow_nan=False),  # expires_at - now
            st.floats(-100, 0, allow_nan=False),  # occurred_at - now
        ),
        st.tuples(st.just("advance"), st.floats(0, 150, allow_nan=False)),
        st.tuples(st.just("expire")),
        st.tuples(st.just("many"), st.integers(1, 120)),
    ),
    max_size=60,
)


@hsettings(deadline=None, max_examples=80)
@given(ops=_OPS, grace=st.sampled_from([0.0, 30.0]))
def test_jtis_behave_like_a_dict_under_revoke_expire_and_check(
    ops: list[tuple[Any, ...]], grace: float
) -> None:
    """jti -> (deadline rounded up, time rounded down), merged as apply merges; a revocation
    holds while ``deadline + grace > now``, and one past that is replaced, not merged with;
    expire() drops every entry past that, so ``size_by_kind()["jti"]`` is exact right after
    it (before it, never below the live count: a growth rebuild may drop due entries)."""
    clock = FakeClock(T0 + 0.25)
    state = make_state(clock, grace=grace)
    model: dict[str, tuple[int, int]] = {}
    batch = 0

    def revoke(jti: str, until: float, at: float) -> None:
        event = TokenRevoked(issuer="i", jti=jti, expires_at=dt(until), occurred_at=dt(at))
        changed = state.apply(event)
        until, at = event.expires_at.timestamp(), event.occurred_at.timestamp()  # to the µs
        new = (math.ceil(until), math.floor(at))
        old = model.get(jti)
        if old is not None and old[0] <= clock.now - grace:
            old = None  # expired: a new revocation replaces it rather than merging with it
        if until <= clock.now - grace:
            assert not changed
            return
        merged = new if old is None else (max(old[0], new[0]), min(old[1], new[1]))
        assert changed is (merged != old)
        model[jti] = merged

    for op in ops:
        if op[0] == "revoke":
            revoke(op[1], clock.now + op[2], clock.now + op[3])
        elif op[0] == "advance":
            clock.advance(op[1])
        elif op[0] == "many":  # distinct jtis: growth, and many entries expiring together
            batch += 1
            for n in range(op[1]):
                revoke(f"b{batch}-{n}", clock.now + 30 + n, clock.now)
        else:
            due = [j for j, (dl, _) in model.items() if dl + grace <= clock.now]
            before = state.size_by_kind()["jti"]
            dropped = state.expire()
            for j in due:
                del model[j]
            assert state.size_by_kind()["jti"] == len(model) == before - dropped
            assert dropped <= len(due)
        live = {j: v for j, v in model.items() if v[0] + grace > clock.now}
        # Between expire() calls, a growth rebuild may already have dropped due entries.
        assert len(live) <= state.size_by_kind()["jti"] <= len(model)
        for jti in [*_JTIS, *model]:
            hit = state.check({"jti": jti}, None)
            want = live.get(jti)
            assert hit == (None if want is None else (RevokedBy.JTI, dt(want[1])))


@hsettings(deadline=None, max_examples=40)
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(_JTIS), st.integers(-100, 400), st.integers(-100, 0)),
        max_size=50,
    ),
    split=st.integers(0, 50),
    later=st.integers(0, 600),
)
def test_restored_jtis_equal_applied_ones_and_expire_alike(
    rows: list[tuple[str, int, int]], split: int, later: int
) -> None:
    """restore_jtis (the snapshot path: sorted columns, several chunks, one rebuild) gives the
    state apply gives, on top of jtis already held, and its wheel expires them alike."""
    now = int(T0)
    clock = FakeClock(now)
    applied, restored = make_state(clock), make_state(clock)
    for jti, dl, at in rows[:split]:  # already in both states before the snapshot loads
        for state in (applied, restored):
            state.apply(
                TokenRevoked(issuer="i", jti=jti, expires_at=dt(now + dl), occurred_at=dt(now + at))
            )
    for jti, dl, at in rows[split:]:
        applied.apply(
            TokenRevoked(issuer="i", jti=jti, expires_at=dt(now + dl), occurred_at=dt(now + at))
        )
    chunks = [rows[split:][k::2] for k in range(2)]  # two chunks, each sorted by deadline
    columns = []
    for chunk in chunks:
        chunk = sorted(chunk, key=lambda r: r[1])
        columns.append(
            (
                [j for j, _, _ in chunk],
                [now + d for _, d, _ in chunk],
                [now + a for _, _, a in chunk],
            )
        )
    loaded = restored.restore_jtis(columns)
    assert loaded == sum(1 for _, dl, _ in rows[split:] if dl > 0)
    assert restored.snapshot() == applied.snapshot()
    clock.advance(later)
    assert restored.expire() == applied.expire()
    assert restored.snapshot() == applied.snapshot()
    assert restored.size_by_kind() == applied.size_by_kind()
    for jti in _JTIS:
        assert restored.check({"jti": jti}, None) == applied.check({"jti": jti}, None)


def test_restore_jtis_refuses_columns_of_different_lengths(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="differ in length"):
        make_state(clock).restore_jtis([(["a", "b"], [int(T0) + 9], [int(T0)])])


def test_a_jti_revoked_with_an_occurred_at_before_1970_is_applied_not_raised(
    clock: FakeClock,
) -> None:
    state = make_state(clock)
    old = TokenRevoked(issuer="idp", jti="j-1", occurred_at=dt(-86400), expires_at=dt(T0 + 600))
    assert state.apply(old)
    assert rule(state, claims()) is RevokedBy.JTI
    assert state.apply(TokenRevoked(issuer="idp", jti="j-2", expires_at=dt(T0 + 60)))
    assert rule(state, claims(jti="j-2")) is RevokedBy.JTI


def test_a_rule_dated_at_the_edge_of_the_calendar_still_answers_revoked(
    clock: FakeClock,
) -> None:
    """0001-01-01T00:00+23:59 is a valid aware datetime whose UTC instant is in year 0: the
    revocation time of the answer must not raise ValueError out of ``check``."""
    edge = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=23, minutes=59)))
    state = make_state(clock)
    assert state.apply(
        SessionRevoked(issuer="idp", sid="s-1", occurred_at=edge, expires_at=dt(T0 + 600))
    )
    assert state.apply(KeyRevoked(issuer="idp", kid="k-old", occurred_at=edge))
    assert state.apply(SubjectBlocked(issuer="idp", sub="alice", occurred_at=edge))
    assert rule(state, claims(jti=None, sid="s-1", sub="bob")) is RevokedBy.SID
    assert rule(state, claims(jti=None, sub="bob"), kid="k-old") is RevokedBy.KEY
    assert rule(state, claims(jti=None)) is RevokedBy.BLOCKED


_AWARE = TypeAdapter(AwareDatetime)


@given(
    when=st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    offset=st.sampled_from(["Z", "+00:00", "-00:00", "+05:30", "-11:59"]),
)
def test_event_times_convert_to_exactly_the_float_timestamp_gives(
    when: datetime, offset: str
) -> None:
    """The state's fast conversion of pydantic's UTC times (and its fallback for any other
    offset) yields the very float of ``timestamp()``: a rule's deadline never shifts."""
    parsed = _AWARE.validate_json(f'"{when.isoformat()}{offset}"'.encode())
    assert _ts(parsed) == parsed.timestamp()
    assert _ts(when.replace(tzinfo=UTC)) == when.replace(tzinfo=UTC).timestamp()


def test_the_fast_time_conversion_is_taken_for_the_times_events_carry() -> None:
    value = EventCodec().encode(TokenRevoked(issuer="i", jti="j", expires_at=dt(100))).value
    event = EventCodec(require_signature=False).decode(value)
    assert isinstance(event, TokenRevoked)
    assert event.expires_at.tzinfo is _PYD_UTC
    assert event.occurred_at.tzinfo is _PYD_UTC
