"""The snapshotter's rules: loading a snapshot gives what applying the events gives."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumer_sdk import RevocationState
from consumer_sdk._settings import MAX_LEEWAY
from consumer_sdk._snapshot import decode_chunk, restore
from revocation_events import (
    Event,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SettingsError,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)
from streams import StreamsSettings
from streams._snapshot_rules import CLOCK_SKEW, PartitionRules
from tests.streams._support import KEY_SPEC, T0

NOW = T0.timestamp()
LIFETIME = 600.0
LEEWAY = 5.0


def _clock() -> float:
    return NOW


_keys = st.sampled_from(["a", "b", "c", "ü-d"])
_past = st.integers(min_value=0, max_value=500).map(lambda s: T0 - timedelta(seconds=s))
# Live for every reader: expired events would merge in the writer and be skipped by a fresh
# replay (the documented difference).
_future = st.integers(min_value=60, max_value=5000).map(lambda s: T0 + timedelta(seconds=s))
_ids = st.integers(min_value=1, max_value=2**128 - 1).map(lambda n: uuid.UUID(int=n))


def _events() -> st.SearchStrategy[Event]:
    common = {"issuer": st.just("t"), "occurred_at": _past, "id": _ids}
    return st.one_of(
        st.builds(TokenRevoked, jti=_keys, expires_at=_future, **common),
        st.builds(SessionRevoked, sid=_keys, expires_at=_future, **common),
        st.builds(
            SubjectTokensRevoked, sub=_keys, issued_before=_past, expires_at=_future, **common
        ),
        st.builds(SubjectBlocked, sub=_keys, **common),
        st.builds(SubjectUnblocked, sub=_keys, expires_at=_future, **common),
        st.builds(SubjectDeleted, sub=_keys, expires_at=_future, **common),
        st.builds(
            SubjectVersionBumped,
            sub=_keys,
            min_version=st.integers(0, 9),
            expires_at=_future,
            **common,
        ),
        st.builds(KeyRevoked, kid=_keys, **common),
        st.builds(
            lambda e, back: GlobalTokensRevoked(
                issuer="t",
                occurred_at=e.occurred_at,
                id=e.id,
                issued_before=e.occurred_at - timedelta(seconds=back),
                expires_at=e.expires_at,
            ),
            st.builds(SessionRevoked, sid=_keys, expires_at=_future, **common),
            st.integers(0, 300),
        ),
    )


def _state() -> RevocationState:
    return RevocationState(clock=_clock, max_token_lifetime=LIFETIME, grace=LEEWAY)


@settings(max_examples=150, deadline=None)
@given(
    # Event ids are unique (the producer draws UUID4s); the same event may arrive twice.
    distinct=st.lists(
        st.tuples(_events(), st.integers(0, 2)), max_size=40, unique_by=lambda e: e[0].id
    ),
    repeats=st.lists(st.integers(0, 39), max_size=10),
    chunk_bytes=st.sampled_from([4096, 1_000_000]),
)
def test_loading_partition_snapshots_equals_applying_every_event(
    distinct: list[tuple[Event, int]], repeats: list[int], chunk_bytes: int
) -> None:
    events = distinct + [distinct[i] for i in repeats if i < len(distinct)]
    replayed = _state()
    partitions = [PartitionRules(LIFETIME, _clock) for _ in range(3)]
    for event, partition in events:
        replayed.apply(event)
        partitions[partition].apply(event)
    chunks = [decode_chunk(c) for rules in partitions for c in rules.chunks(chunk_bytes)]
    loaded = _state()
    restore(loaded, chunks)
    assert loaded.snapshot() == replayed.snapshot()
    # The writer resuming from its own snapshot holds the same rules.
    for rules in partitions:
        again = PartitionRules.from_chunks(
            [decode_chunk(c) for c in rules.chunks(chunk_bytes)], LIFETIME, _clock
        )
        assert again.chunks(chunk_bytes) == rules.chunks(chunk_bytes)


def test_restored_jtis_expire_on_the_time_wheel_like_applied_ones() -> None:
    now = [NOW]
    rules = PartitionRules(LIFETIME, lambda: now[0])
    for n in range(2000):
        rules.revoke_jti(f"j{n}", NOW + 60 + n, NOW - 10)
    state = RevocationState(clock=lambda: now[0], max_token_lifetime=LIFETIME)
    loaded = restore(state, [decode_chunk(c) for c in rules.chunks(4096)])
    assert loaded["jti"] == 2000
    assert state.check({"jti": "j1999"}, None) is not None
    now[0] = NOW + 60 + 1000
    assert state.expire() == 1001
    assert state.size_by_kind()["jti"] == 999
    assert state.check({"jti": "j999"}, None) is None
    assert state.check({"jti": "j1001"}, None) is not None


def test_rules_dead_for_every_reader_are_pruned_and_not_written() -> None:
    now = [NOW]
    rules = PartitionRules(LIFETIME, lambda: now[0])
    rules.revoke_jti("short", NOW + 10, NOW)
    rules.revoke_jti("long", NOW + 4000, NOW)
    rules.apply(
        SessionRevoked(issuer="t", sid="s", occurred_at=T0, expires_at=T0 + timedelta(seconds=10))
    )
    assert len(rules) == 3
    # Each is kept through the largest leeway any SDK may use (MAX_LEEWAY = 300 s) and a
    # reader's clock up to CLOCK_SKEW (60 s) behind the writer's...
    keep = MAX_LEEWAY + CLOCK_SKEW
    now[0] = NOW + 10 + keep - 1
    assert rules.prune() == 0
    now[0] = NOW + 10 + keep + 1
    assert rules.prune() == 1
    # ...the session until occurred_at + max_token_lifetime, its deadline for every reader.
    now[0] = NOW + LIFETIME + keep - 1
    assert rules.prune() == 0
    now[0] = NOW + LIFETIME + keep + 1
    assert rules.prune() == 1
    assert [d.jti for d in map(decode_chunk, rules.chunks())] == [["long"]]


def test_the_worker_reads_its_snapshot_key_and_lifetime_from_the_environment() -> None:
    secret = base64.urlsafe_b64encode(b"n" * 32).rstrip(b"=").decode()
    env = {
        "REVOCAST_EVENT_KEYS": KEY_SPEC,
        "REVOCAST_TOPIC": "revs",
        "REVOCAST_SNAPSHOT_SIGNING_KEY": f"snap-1:hmac:{secret}",
        "REVOCAST_MAX_TOKEN_LIFETIME": "900",
        "REVOCAST_STREAMS_SNAPSHOT_INTERVAL_SECONDS": "5",
    }
    got = StreamsSettings.from_env(environ=env)
    assert got.snapshot_signing_key is not None
    assert got.snapshot_signing_key.kid == "snap-1"
    assert (got.max_token_lifetime, got.snapshot_interval_seconds) == (900.0, 5.0)
    assert got.snapshot_topic == "revs.snapshots"
    assert (
        StreamsSettings.from_env(environ={"REVOCAST_EVENT_KEYS": KEY_SPEC}).snapshot_signing_key
        is None
    )
    with pytest.raises(SettingsError, match="REVOCAST_SNAPSHOT_SIGNING_KEY"):
        StreamsSettings.from_env(
            environ={**env, "REVOCAST_SNAPSHOT_SIGNING_KEY": "snap-1:hmac:short"}
        )
    with pytest.raises(SettingsError, match="snapshot_chunk_bytes"):
        StreamsSettings.from_env(
            environ={**env, "REVOCAST_STREAMS_SNAPSHOT_CHUNK_BYTES": "2000000"}
        )


def test_a_writer_clock_ahead_of_a_reader_s_drops_no_rule_the_reader_still_enforces() -> None:
    # The writer prunes by its own clock. A reader with the largest leeway and a clock 30 s
    # behind the writer's still refuses these tokens when replaying the log; loading the
    # snapshot must give it the same rules, not silently un-revoke them.
    skew = 30.0
    rules = PartitionRules(LIFETIME, lambda: NOW + skew)
    reader = RevocationState(clock=_clock, max_token_lifetime=LIFETIME, grace=MAX_LEEWAY)
    replay = RevocationState(clock=_clock, max_token_lifetime=LIFETIME, grace=MAX_LEEWAY)
    ending = T0 - timedelta(seconds=MAX_LEEWAY - 10)  # live for the reader for 10 more s
    events: list[Event] = [
        TokenRevoked(issuer="t", jti="j", occurred_at=T0 - timedelta(hours=1), expires_at=ending),
        SessionRevoked(
            issuer="t",
            sid="s",
            occurred_at=ending - timedelta(seconds=LIFETIME),
            expires_at=ending,
        ),
    ]
    for event in events:
        rules.apply(event)
        replay.apply(event)
    rules.prune()
    restore(reader, [decode_chunk(c) for c in rules.chunks()])
    assert replay.check({"jti": "j"}, None) is not None
    assert replay.check({"sid": "s"}, None) is not None
    assert reader.check({"jti": "j"}, None) is not None
    assert reader.check({"sid": "s"}, None) is not None
    assert reader.snapshot() == replay.snapshot()


def _assert_a_snapshot_loads_as_the_replay(events: list[Event]) -> None:
    rules = PartitionRules(LIFETIME, _clock)
    replay = _state()
    for event in events:
        rules.apply(event)
        replay.apply(event)
    reader = _state()
    restore(reader, [decode_chunk(c) for c in rules.chunks()])
    assert reader.snapshot() == replay.snapshot()


def test_rules_of_signed_events_dated_before_1970_survive_a_snapshot() -> None:
    # The event model accepts any aware datetime; a log replay applies such an event, and a
    # key revocation or a block never expires: a snapshot holding one must still load, not be
    # refused as bad_chunk for as long as the rule lives.
    old = datetime(1960, 1, 1, tzinfo=UTC)
    events: list[Event] = [
        KeyRevoked(issuer="t", kid="k-1960", occurred_at=old),
        SubjectBlocked(issuer="t", sub="mallory", occurred_at=old),
    ]
    _assert_a_snapshot_loads_as_the_replay(events)


def test_rules_that_expire_at_the_last_datetime_survive_a_snapshot() -> None:
    # "Never" spelled as the largest datetime: its timestamp rounds to 253402300800.0, which
    # is valid in an event and must not make the partition's snapshots bad_chunk for good.
    never = datetime.max.replace(tzinfo=UTC)
    events: list[Event] = [
        SubjectDeleted(issuer="t", sub="gone", occurred_at=T0, expires_at=never),
        SessionRevoked(issuer="t", sid="s", occurred_at=T0, expires_at=never),
        GlobalTokensRevoked(issuer="t", issued_before=T0, occurred_at=T0, expires_at=never),
    ]
    _assert_a_snapshot_loads_as_the_replay(events)
