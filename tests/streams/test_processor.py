"""The worker's logic with plain dicts for tables and a fake clock."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence

import pytest

from revocation_events import (
    SIGNATURE_HEADER,
    EncodedEvent,
    EventCodec,
    GlobalTokensRevoked,
    SubjectBlocked,
    SubjectUnblocked,
    TokenRevoked,
)
from streams import parse_marker
from streams._processor import Processor
from streams._records import Output
from tests.streams._support import T0, VERIFYING_CODEC, at, encode, uid


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, codec: EventCodec = VERIFYING_CODEC, **options: object) -> None:
        self.clock = Clock()
        self.rules: dict[bytes, bytes] = {}
        self.windows: dict[bytes, bytes] = {}
        self.offset = 0
        self.processor = Processor(
            codec=codec,
            log_topic="log",
            rules=self.rules,
            windows=self.windows,
            clock=self.clock,
            **options,  # type: ignore[arg-type]
        )
        for partition in range(3):  # the worker's first ticks, right after assignment
            self.processor.on_tick(partition)

    def feed(self, encoded: EncodedEvent, partition: int = 0) -> list[Output]:
        self.offset += 1
        return self.processor.on_record(
            partition=partition,
            offset=self.offset,
            timestamp=self.clock.now,
            value=encoded.value,
            headers=list(encoded.headers),
        )

    def tick(self, partition: int = 0) -> list[Output]:
        return self.processor.on_tick(partition)


def _state(outputs: Sequence[Output]) -> list[Output]:
    return [out for out in outputs if out.sink == "state"]


def _jti(n: int, expires: float) -> EncodedEvent:
    return encode(TokenRevoked(id=uid(n), issuer="i", jti=f"j{n}", expires_at=at(expires)))


def test_new_rule_is_published_with_the_original_bytes_and_signature() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    [out] = h.feed(encoded, partition=2)
    assert out == Output("state", b"jti:j1", encoded.value, 2, encoded.headers)
    assert VERIFYING_CODEC.decode(out.value, out.headers).id == uid(1)


def test_record_with_a_forged_signature_is_skipped_and_counted() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    forged = EncodedEvent(encoded.key, encoded.value.replace(b"j1", b"j2"), encoded.headers)
    assert h.feed(forged) == []
    assert h.processor.counters["skipped.bad_signature"] == 1
    assert h.rules == {}


def test_unsigned_record_is_skipped_unless_unsigned_events_are_allowed() -> None:
    unsigned = EventCodec(require_signature=False).encode(
        TokenRevoked(issuer="i", jti="j", expires_at=at(60))
    )
    strict = Harness()
    assert strict.feed(unsigned) == []
    assert strict.processor.counters["skipped.unsigned"] == 1
    lenient = Harness(EventCodec(require_signature=False))
    [out] = lenient.feed(unsigned)
    assert out.headers == ()


def test_redelivered_event_rewrites_the_same_winner_and_is_not_counted_again() -> None:
    h = Harness()
    first = h.feed(_jti(1, 60))
    again = h.feed(_jti(1, 60))
    assert _state(again) == _state(first)
    assert h.processor.counters["duplicate"] == 1
    [(key, stored)] = h.windows.items()
    assert json.loads(stored)["counts"] == {"token.revoked": {"": 1}}
    assert key == f"0|{int(T0.timestamp()) // 60 * 60}".encode()


def test_superseded_or_expired_event_publishes_nothing() -> None:
    h = Harness()
    h.feed(_jti(1, 600))
    same_jti_shorter = encode(TokenRevoked(id=uid(2), issuer="i", jti="j1", expires_at=at(60)))
    assert _state(h.feed(same_jti_shorter)) == []
    assert _state(h.feed(_jti(3, -1))) == []


def test_tick_tombstones_rules_whose_expiry_has_passed() -> None:
    h = Harness()
    h.feed(_jti(1, 10))
    h.feed(_jti(2, 100))
    assert [out.key for out in _state(h.tick())] == [b"__offsets__:0"]
    h.clock.now += 11
    assert _state(h.tick()) == [Output("state", b"jti:j1", None, 0)]
    assert list(h.rules) == [b"0|jti:j2"]


def test_sweep_finds_rules_restored_before_the_first_tick() -> None:
    h = Harness()
    h.feed(_jti(1, 10))
    h.processor.forget_partitions()  # as after a restart or a rebalance
    h.clock.now += 11
    assert [out.value for out in _state(h.tick())] == [None]


def test_superseding_unblock_stays_as_the_rule_until_it_expires() -> None:
    h = Harness()
    h.feed(encode(SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-5))))
    unblock = encode(
        SubjectUnblocked(id=uid(2), issuer="i", sub="u", occurred_at=at(-1), expires_at=at(30))
    )
    [out] = _state(h.feed(unblock))
    assert (out.key, out.value) == (b"sub-block:u", unblock.value)
    h.clock.now += 31
    assert [(o.key, o.value) for o in _state(h.tick())[:1]] == [(b"sub-block:u", None)]


def test_unblock_replayed_after_its_expiry_still_lifts_the_older_block() -> None:
    """A rebuild or a lagging worker reads the unblock after its expires_at: the block it
    lifted must not stay in force (the SDK orders them by time alone, too)."""
    h = Harness()
    block = encode(SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-100)))
    h.feed(block)
    old_unblock = encode(
        SubjectUnblocked(id=uid(2), issuer="i", sub="u", occurred_at=at(-90), expires_at=at(-1))
    )
    assert _state(h.feed(old_unblock)) == [Output("state", b"sub-block:u", None, 0)]
    older_block = encode(SubjectBlocked(id=uid(3), issuer="i", sub="u", occurred_at=at(-95)))
    assert _state(h.feed(older_block)) == [], "the dead unblock still orders older blocks"
    assert _state(h.tick())[0] == Output("state", b"sub-block:u", None, 0)
    assert h.rules == {}


def test_expiry_margin_keeps_rules_past_their_expiry() -> None:
    h = Harness(expiry_margin=30)
    h.feed(_jti(1, 10))
    h.clock.now += 20
    late = encode(TokenRevoked(id=uid(2), issuer="i", jti="j2", expires_at=at(5)))
    assert [out.key for out in _state(h.feed(late))] == [b"jti:j2"], "still within the margin"
    assert [out.key for out in _state(h.tick())] == [b"__offsets__:0"]
    h.clock.now += 21
    assert sorted(out.key for out in _state(h.tick()) if out.value is None) == [
        b"jti:j1",
        b"jti:j2",
    ]


def test_marker_follows_the_rule_records_it_covers_and_names_the_last_offset() -> None:
    h = Harness()
    h.feed(_jti(1, 60), partition=1)
    h.feed(_jti(2, 60), partition=1)
    [marker] = _state(h.tick(partition=1))
    assert marker.partition == 1
    assert marker.value is not None
    assert parse_marker(marker.value) == (1, h.offset)


def test_marker_is_not_repeated_while_the_partition_is_idle() -> None:
    h = Harness()
    h.feed(_jti(1, 60))
    assert len(_state(h.tick())) == 1
    assert _state(h.tick()) == []
    assert _state(h.tick(partition=1)) == []


def test_skipped_records_still_advance_the_marker() -> None:
    h = Harness()
    h.feed(EncodedEvent(b"k", b"not json", ()))
    [marker] = _state(h.tick())
    assert marker.value is not None
    assert parse_marker(marker.value) == (0, 1)


def test_replay_after_a_lost_state_write_republishes_the_winner() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    h.feed(encoded)  # the table kept it; say the state record was lost in a crash
    [again] = h.feed(encoded)
    assert (again.key, again.value) == (b"jti:j1", encoded.value)


def test_first_tick_after_a_restart_republishes_live_rules_lost_from_the_state_topic() -> None:
    h = Harness()
    kept = _jti(1, 60)
    h.feed(kept)
    h.feed(_jti(2, 5))
    h.feed(_jti(3, 60), partition=1)
    h.tick()
    # kill -9: the table survives in its changelog, the offsets were committed, and the
    # state records may not have been written.
    h.processor.forget_partitions()
    h.clock.now += 6
    republished = _state(h.tick())
    # No marker yet: the restarted worker knows no offset until it processes a record.
    assert [(o.key, o.value, o.headers) for o in republished] == [
        (b"jti:j2", None, ()),
        (b"jti:j1", kept.value, kept.headers),
    ]
    assert _state(h.tick()) == []


def test_after_a_restart_the_first_tick_marks_everything_below_the_committed_offset() -> None:
    """kill -9 after the last records of a partition were committed but before a tick
    marked them: nothing is redelivered, and the marker used to stay behind for good."""
    committed: dict[int, int] = {}
    h = Harness(committed=committed.get)
    for n in range(1, 4):
        h.feed(_jti(n, 60))
    assert parse_marker(_state(h.tick())[-1].value or b"") == (0, 3)
    h.feed(_jti(4, 60))
    h.feed(_jti(5, 60))
    committed[0] = 6  # offsets 4 and 5 were processed, flushed and committed; then kill -9
    h.processor.forget_partitions()
    outputs = _state(h.tick())
    assert [o.key for o in outputs[:-1]] == [f"jti:j{n}".encode() for n in range(1, 6)]
    assert parse_marker(outputs[-1].value or b"") == (0, 5)
    assert _state(h.tick(1)) == [], "partition 1 has nothing committed, so no marker"


def test_failed_state_write_republishes_the_partition_on_the_next_tick() -> None:
    h = Harness()
    h.feed(_jti(1, 60))
    h.tick()
    h.processor.resync(0)
    assert [o.key for o in _state(h.tick())] == [b"jti:j1", b"__offsets__:0"]
    assert _state(h.tick(partition=1)) == []


def test_record_redelivered_into_an_open_window_is_not_counted_twice() -> None:
    h = Harness(window_seconds=60, window_grace_seconds=5)
    encoded = _jti(1, 600)
    h.feed(encoded)
    h.feed(_jti(2, -1))  # expired: counted, never a winner
    h.processor.forget_partitions()  # a rebalance, then both records come again
    h.offset = 0
    h.feed(encoded)
    h.feed(_jti(2, -1))
    assert h.processor.counters["recounts_avoided"] == 1
    h.clock.now += 65
    [stats] = [o for o in h.tick() if o.sink == "stats"]
    assert stats.value is not None
    assert json.loads(stats.value)["total"] == 2


def test_closed_window_is_published_as_stats_once() -> None:
    h = Harness(window_seconds=60, window_grace_seconds=5)
    h.feed(_jti(1, 600))
    h.feed(encode(SubjectBlocked(issuer="i", sub="u", reason="fraud")))
    assert [o for o in h.tick() if o.sink == "stats"] == []
    h.clock.now += 65
    [stats] = [o for o in h.tick() if o.sink == "stats"]
    assert stats.value is not None
    doc = json.loads(stats.value)
    assert doc["total"] == 2
    assert doc["counts"] == {"subject.blocked": {"fraud": 1}, "token.revoked": {"": 1}}
    assert [o for o in h.tick() if o.sink == "stats"] == []


def test_alert_once_when_blocks_in_a_window_exceed_the_threshold(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(alert_thresholds={"subject.blocked": 2})
    alerts = []
    with caplog.at_level(logging.WARNING, logger="streams"):
        for n in range(5):
            outputs = h.feed(encode(SubjectBlocked(issuer="i", sub=f"u{n}")))
            alerts += [o for o in outputs if o.sink == "alerts"]
    [alert] = alerts
    assert alert.value is not None
    assert json.loads(alert.value)["count"] == 3
    assert "ALERT: 3 subject.blocked" in caplog.text


def test_any_global_revocation_alerts_with_threshold_zero() -> None:
    h = Harness(alert_thresholds={"global.tokens_revoked": 0})
    event = GlobalTokensRevoked(
        issuer="i", occurred_at=at(0), issued_before=at(0), expires_at=at(60)
    )
    assert [o.sink for o in h.feed(encode(event))] == ["state", "alerts"]


def test_signature_header_may_come_as_a_mapping() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    out = h.processor.on_record(
        partition=0,
        offset=0,
        timestamp=0.0,
        value=encoded.value,
        headers={SIGNATURE_HEADER: encoded.headers[0][1]},
    )
    assert len(out) == 1
