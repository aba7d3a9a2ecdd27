"""The worker's logic with plain dicts for tables and a fake clock."""

from __future__ import annotations

import json
import logging
import random
import uuid
from collections import deque
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consumer_sdk import RevocationState
from consumer_sdk._marker import Marker, read_marker
from revocation_events import (
    SIGNATURE_HEADER,
    EncodedEvent,
    Event,
    EventCodec,
    EventSigner,
    GlobalTokensRevoked,
    KeyRevoked,
    SigningKey,
    SubjectBlocked,
    SubjectTokensRevoked,
    SubjectUnblocked,
    TokenRevoked,
)
from streams import rank, rule_key
from streams._processor import Processor
from streams._records import Output
from tests.streams._support import T0, VERIFYING_CODEC, at, encode, uid


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


class Send:
    """A fake send in flight: resolved by the test (acknowledged or failed)."""

    def __init__(self, out: Output | None = None) -> None:
        self.out = out
        self.error: BaseException | None = None
        self.resolved = False

    def ack(self) -> None:
        self.resolved = True

    def fail(self) -> None:
        self.resolved = True
        self.error = RuntimeError("not written")

    def done(self) -> bool:
        return self.resolved

    def cancelled(self) -> bool:
        return False

    def exception(self) -> BaseException | None:
        return self.error


class Harness:
    def __init__(self, codec: EventCodec = VERIFYING_CODEC, **options: object) -> None:
        self.clock = Clock()
        self.rules: dict[bytes, bytes] = {}
        self.windows: dict[bytes, bytes] = {}
        self.offset = -1
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

    def rule_keys(self) -> list[bytes]:
        """The table's rule entries (without the marker it is in step with)."""
        return [key for key in self.rules if not key.endswith(b"|__synced__")]

    def publish(self, outputs: list[Output]) -> list[Send]:
        """Hand the outputs to a fake producer: every send stays in flight."""
        sends = [Send(out) for out in outputs]
        for send in sends:
            assert send.out is not None
            self.processor.sent(send.out, send)
        return sends


def _state(outputs: Sequence[Output]) -> list[Output]:
    return [out for out in outputs if out.sink == "state"]


def _jti(n: int, expires: float) -> EncodedEvent:
    return encode(TokenRevoked(id=uid(n), issuer="i", jti=f"j{n}", expires_at=at(expires)))


def _sk(encoded: EncodedEvent) -> bytes:
    """The state-topic key of an event's record: its rule key and its event id."""
    event = VERIFYING_CODEC.decode(encoded.value, encoded.headers)
    return f"{rule_key(event)}#{event.id}".encode()


def test_new_rule_is_published_with_the_original_bytes_and_signature() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    [out] = h.feed(encoded, partition=2)
    assert out == Output("state", _sk(encoded), encoded.value, 2, encoded.headers)
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


def test_unverified_signature_header_that_is_not_ascii_is_kept_byte_for_byte() -> None:
    """With unsigned events allowed and no keys, a signature header is not verified: any
    bytes in it used to crash the agent (UnicodeDecodeError storing the rule)."""
    codec = EventCodec(require_signature=False)
    encoded = codec.encode(TokenRevoked(id=uid(1), issuer="i", jti="j", expires_at=at(60)))
    h = Harness(codec)
    headers = ((SIGNATURE_HEADER, b"\xff\xfe"),)
    [out] = h.feed(EncodedEvent(encoded.key, encoded.value, headers))
    assert (out.value, out.headers) == (encoded.value, headers)
    h.processor.resync(0)
    assert [o.headers for o in _state(h.tick())] == [headers], "the table kept it too"


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
    h.feed(j1 := _jti(1, 10))
    h.feed(_jti(2, 100))
    assert [out.key for out in _state(h.tick())] == [b"__offsets__:0"]
    h.clock.now += 11
    # Its own record, and the rule's record as workers before per-event keys wrote it.
    assert _state(h.tick()) == [
        Output("state", _sk(j1), None, 0),
        Output("state", b"jti:j1", None, 0),
    ]
    assert h.rule_keys() == [b"0|jti:j2"]


def test_sweep_finds_rules_restored_before_the_first_tick() -> None:
    h = Harness()
    h.feed(_jti(1, 10))
    h.processor.forget_partitions()  # as after a restart or a rebalance
    h.clock.now += 11
    assert [out.value for out in _state(h.tick())] == [None, None]


def test_a_block_or_key_revocation_carrying_expires_at_is_never_tombstoned() -> None:
    """SDKs keep blocks and revoked keys forever, whatever ``expires_at`` they carry: one
    bootstrapping from the state topic must still find them after it."""
    h = Harness()
    block = SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(0), expires_at=at(60))
    kid = KeyRevoked(id=uid(2), issuer="i", kid="k", occurred_at=at(0), expires_at=at(60))
    for event in (block, kid):
        [out] = h.feed(encode(event))
        assert out.value is not None
    h.clock.now += 3600
    assert [o.key for o in _state(h.tick()) if o.value is None] == []
    late = KeyRevoked(id=uid(3), issuer="i", kid="k2", occurred_at=at(0), expires_at=at(60))
    assert [o.value is not None for o in _state(h.feed(encode(late)))] == [True]


def test_a_block_stored_with_its_expires_at_by_an_older_worker_is_not_tombstoned() -> None:
    h = Harness()
    block = SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(0), expires_at=at(60))
    h.feed(encode(block))
    [(table_key, stored)] = h.rules.items()
    h.rules[table_key] = stored.replace(b'"exp":null', f'"exp":{at(60).timestamp()}'.encode())
    h.processor.forget_partitions()  # the heap is rebuilt from the table, as after a restart
    h.clock.now += 3600
    assert _state(h.tick()) == []
    assert table_key in h.rules


def test_a_superseding_unblock_replaces_the_blocks_record_and_outlives_its_expiry() -> None:
    """The unblock's record is written before the block's tombstone, and is never
    tombstoned: it keeps lifting the block should a record of the block come back (written
    late by a paused worker, or its tombstone lost in a crash)."""
    h = Harness()
    block = encode(SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-5)))
    h.feed(block)
    unblock = encode(
        SubjectUnblocked(id=uid(2), issuer="i", sub="u", occurred_at=at(-1), expires_at=at(30))
    )
    assert [(o.key, o.value) for o in _state(h.feed(unblock))] == [
        (_sk(unblock), unblock.value),
        (_sk(block), None),
    ]
    h.clock.now += 31
    assert [o for o in _state(h.tick()) if o.value is None] == []
    assert h.rule_keys() == [], "the table forgets it"


def test_unblock_replayed_after_its_expiry_still_lifts_the_older_block() -> None:
    """A rebuild or a lagging worker reads the unblock after its expires_at: the block it
    lifted must not stay in force (the SDK orders them by time alone, too)."""
    h = Harness()
    block = encode(SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-100)))
    h.feed(block)
    old_unblock = encode(
        SubjectUnblocked(id=uid(2), issuer="i", sub="u", occurred_at=at(-90), expires_at=at(-1))
    )
    assert [(o.key, o.value) for o in _state(h.feed(old_unblock))] == [
        (_sk(old_unblock), old_unblock.value),
        (_sk(block), None),
    ]
    older_block = encode(SubjectBlocked(id=uid(3), issuer="i", sub="u", occurred_at=at(-95)))
    assert _state(h.feed(older_block)) == [], "the dead unblock still orders older blocks"
    assert [o for o in _state(h.tick()) if o.value is None] == []
    assert h.rule_keys() == []


def test_an_sdk_ignoring_tombstones_is_not_left_blocked_by_an_unblock_read_late() -> None:
    """SDKs skip tombstones when they bootstrap. An unblock read after its expires_at used
    to reach the state topic only as a tombstone, so until compaction removed the block
    record, a new SDK applied the block alone and refused the subject a log replay lets in."""
    h = Harness()
    outputs = h.feed(encode(SubjectBlocked(id=uid(1), issuer="i", sub="u", occurred_at=at(-100))))
    outputs += h.feed(
        encode(
            SubjectUnblocked(id=uid(2), issuer="i", sub="u", occurred_at=at(-90), expires_at=at(-1))
        )
    )
    outputs += h.tick()
    sdk = RevocationState(clock=h.clock, max_token_lifetime=3600)
    for out in _state(outputs):
        if out.value is not None and not out.is_marker:
            sdk.apply(VERIFYING_CODEC.decode(out.value, out.headers))
    assert sdk.check({"sub": "u", "jti": "t", "iat": h.clock.now - 10}, None) is None


def test_expiry_margin_keeps_rules_past_their_expiry() -> None:
    h = Harness(expiry_margin=30)
    h.feed(_jti(1, 10))
    h.clock.now += 20
    late = encode(TokenRevoked(id=uid(2), issuer="i", jti="j2", expires_at=at(5)))
    assert [out.key for out in _state(h.feed(late))] == [_sk(late)], "still within the margin"
    assert [out.key for out in _state(h.tick())] == [b"__offsets__:0"]
    h.clock.now += 21
    assert sorted(out.key for out in _state(h.tick()) if out.value is None) == sorted(
        [_sk(_jti(1, 10)), b"jti:j1", _sk(late), b"jti:j2"]
    )


def _markers(outputs: Sequence[Output]) -> list[int]:
    return [_marker(o).offset for o in outputs if o.is_marker]


def _marker(out: Output) -> Marker:
    assert out.partition is not None
    marker = read_marker(out.key, out.value, "log", out.partition)
    assert marker is not None, out
    return marker


def test_marker_follows_the_rule_records_it_covers_and_names_the_last_offset() -> None:
    h = Harness()
    h.feed(_jti(1, 60), partition=1)
    h.feed(_jti(2, 60), partition=1)
    [marker] = _state(h.tick(partition=1))
    assert marker.partition == 1
    assert marker.value is not None
    assert _marker(marker) == Marker(h.offset, None)


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
    assert _marker(marker) == Marker(0, None)


def test_marker_waits_until_every_state_write_it_covers_is_acknowledged() -> None:
    """Never a marker ahead of an unacknowledged effect: if the worker died now, the
    marker would promise a rule the state topic does not have."""
    h = Harness()
    sends = [s for n in range(3) for s in h.publish(h.feed(_jti(n, 60)))]
    assert len(sends) == 3
    assert _markers(h.tick()) == []
    sends[0].ack()
    sends[2].ack()
    assert _markers(h.tick()) == [], "offset 1's rule is still in flight"
    later = h.publish(h.feed(_jti(9, 60)))  # offset 3, sent after the tick queued offset 2
    sends[1].ack()
    assert _markers(h.tick()) == [2], "offset 3's write is still in flight"
    later[0].ack()
    assert _markers(h.tick()) == [3]
    assert _markers(h.tick()) == []


def _with_tracked_changelog() -> tuple[Harness, list[Send]]:
    """A harness whose rules table tracks one changelog write per change, as faust's does."""
    h = Harness()
    changelog: list[Send] = []

    class Table(dict[bytes, bytes]):
        def __setitem__(self, key: bytes, value: bytes) -> None:
            super().__setitem__(key, value)
            changelog.append(Send())
            h.processor.track(int(key.split(b"|")[0]), changelog[-1])

    h.rules = Table()
    h.processor = Processor(
        codec=VERIFYING_CODEC, log_topic="log", rules=h.rules, windows={}, clock=h.clock
    )
    return h, changelog


def test_marker_waits_for_the_tables_changelog_writes_too() -> None:
    h, changelog = _with_tracked_changelog()
    for send in h.publish(h.feed(_jti(1, 60))):
        send.ack()
    assert len(changelog) == 1
    assert _markers(h.tick()) == [], "the table's changelog has not got the rule yet"
    changelog[0].ack()
    assert _markers(h.tick()) == [0]


def test_a_replayed_winner_is_written_to_the_table_again_before_a_marker_covers_it() -> None:
    """A rebalance forgets the writes still in flight; the worker keeps its in-memory table
    and gets the partition back, re-reading from the last marker. The replayed event is a
    duplicate of the table's winner, whose changelog write then failed unseen: the marker
    must wait for a new changelog write, or a restart recovers a table without the winner
    and a weaker event for the key would replace it in the state topic."""
    h, changelog = _with_tracked_changelog()
    [state] = h.publish(h.feed(_jti(1, 60)))
    h.processor.forget_partitions()  # revoked while both writes were in flight
    state.ack()
    changelog[0].fail()
    h.processor.arm(0, 0)  # assigned again: no marker yet, re-read from offset 0
    h.offset = -1
    for send in h.publish(h.feed(_jti(1, 60))):
        send.ack()
    assert len(changelog) == 2, "the duplicate did not re-write the table"
    assert _markers(h.tick()) == [], "offset 0 marked while the changelog lacks its rule"
    changelog[1].ack()
    assert _markers(h.tick()) == [0]


def test_a_failed_write_drops_the_markers_behind_it_and_the_next_tick_repairs() -> None:
    h = Harness()
    [lost] = h.publish(h.feed(_jti(1, 60)))
    [kept] = h.publish(h.feed(_jti(2, 60)))
    assert _markers(h.tick()) == []  # queues offset 1 behind both writes
    kept.ack()
    lost.fail()
    repair = h.tick()
    assert _markers(repair) == [], "offset 1's marker promised the lost rule"
    assert sorted(o.key for o in _state(repair)) == sorted([_sk(_jti(1, 60)), _sk(_jti(2, 60))])
    assert h.processor.counters["failed_writes"] == 1
    sends = h.publish(repair)
    assert _markers(h.tick()) == [], "the repair is still in flight"
    for send in sends:
        send.ack()
    assert _markers(h.tick()) == [1]


def test_a_publish_that_raised_repairs_the_partition_before_marking_past_it() -> None:
    h = Harness()
    h.feed(_jti(1, 60))  # its outputs never reached the producer: say the send raised
    h.processor.resync(0)
    repair = h.tick()
    assert [(o.key, _markers([o])) for o in _state(repair)] == [(_sk(_jti(1, 60)), [])]
    assert _markers(h.tick()) == [0]


def test_markers_cover_only_offsets_processed_in_a_row_from_the_resume_point() -> None:
    h = Harness()
    h.processor.arm(0, 5)
    h.offset = 2
    h.feed(_jti(1, 60))  # offset 3: before the resume point, re-read harmlessly
    assert _markers(h.tick()) == [4], "everything before the resume point is covered"
    h.offset = 4
    h.feed(_jti(2, 60))  # 5
    h.feed(_jti(3, 60))  # 6
    assert _markers(h.tick()) == [6]
    h.offset = 8
    h.feed(_jti(4, 60))  # 9: offsets 7 and 8 never arrived
    h.feed(_jti(5, 60))  # 10
    assert _markers(h.tick()) == []
    assert h.processor.counters["coverage_holes"] == 1
    h.processor.forget_partitions()
    h.processor.arm(0, 7)  # reassigned: re-read from the last marker + 1
    h.offset = 6
    for n in range(6, 10):
        h.feed(_jti(n, 60))
    assert _markers(h.tick()) == [10]


def test_an_unarmed_partition_is_covered_from_offset_zero() -> None:
    h = Harness()
    h.offset = 4
    h.feed(_jti(1, 60), partition=1)
    assert _markers(h.tick(1)) == [], "offsets 0..4 were never seen"


def test_replay_after_a_lost_state_write_republishes_the_winner() -> None:
    h = Harness()
    encoded = _jti(1, 60)
    h.feed(encoded)  # the table kept it; say the state record was lost in a crash
    [again] = h.feed(encoded)
    assert (again.key, again.value) == (_sk(encoded), encoded.value)


def test_record_redelivered_into_an_open_window_is_not_counted_twice() -> None:
    h = Harness(window_seconds=60, window_grace_seconds=5)
    encoded = _jti(1, 600)
    h.feed(encoded)
    h.feed(_jti(2, -1))  # expired: counted, never a winner
    h.processor.forget_partitions()  # a rebalance, then both records come again
    h.offset = -1
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


def test_a_record_timestamp_beyond_the_calendar_is_counted_at_the_worker_clock() -> None:
    """The record timestamp is not signed: a valid event re-published with CreateTime
    2**62 ms crashed the agent (ValueError: year out of range) formatting its alert."""
    h = Harness(alert_thresholds={"global.tokens_revoked": 0})
    event = GlobalTokensRevoked(
        issuer="i", occurred_at=at(0), issued_before=at(0), expires_at=at(60)
    )
    encoded = encode(event)
    outputs = h.processor.on_record(
        partition=0, offset=0, timestamp=2**62 / 1000, value=encoded.value, headers=encoded.headers
    )
    [alert] = [o for o in outputs if o.sink == "alerts"]
    assert alert.value is not None
    assert json.loads(alert.value)["window_start"] == T0.isoformat()
    assert h.processor.counters["bad_timestamps"] == 1
    h.clock.now += 3600
    assert [o.sink for o in h.tick() if o.sink == "stats"] == ["stats"]


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


def test_a_record_signed_by_an_unknown_key_holds_the_markers_before_it() -> None:
    """A key rotation half rolled out: services that already trust the new key apply its
    events from the log, but a marker past one made those bootstrapping from the state topic
    skip it, since the worker (without the key) had dropped it."""
    new_key = SigningKey.hmac("rotated", b"r" * 32)
    unknown = EventCodec(signer=EventSigner(new_key)).encode(
        TokenRevoked(id=uid(9), issuer="i", jti="j9", expires_at=at(60))
    )
    h = Harness()
    for send in h.publish(h.feed(_jti(1, 60))):  # offset 0
        send.ack()
    assert h.feed(unknown) == []  # offset 1: skipped, as before
    for send in h.publish(h.feed(_jti(2, 60))):  # offset 2: still processed
        send.ack()
    assert _markers(h.tick()) == [0], "a marker covered a record the worker could not verify"
    assert h.processor.counters["skipped.unknown_key"] == 1
    assert h.processor.counters["unverifiable_holds"] == 1
    h.processor.arm(0, 1)  # restarted (with the key, say): re-read from after the marker
    h.offset = 0
    for send in h.publish(h.feed(_jti(3, 60))):
        send.ack()
    assert _markers(h.tick()) == [1]


# -- seeding a table that is not in step with the state topic ------------------------------


def _state_records(outputs: Sequence[Output]) -> list[tuple[bytes, bytes | None]]:
    """What the worker reads back from the state topic to seed a table."""
    return [
        (o.value, dict(o.headers).get(SIGNATURE_HEADER))
        for o in _state(outputs)
        if o.value is not None and not o.is_marker
    ]


def test_the_table_records_each_marker_it_holds_every_effect_of() -> None:
    h = Harness()
    assert h.processor.synced(0) is None
    for send in h.publish(h.feed(_jti(1, 60))):
        send.ack()
    assert _markers(h.tick()) == [0]
    assert h.processor.synced(0) == 0
    assert h.processor.synced(1) is None


def test_a_seeded_table_keeps_the_state_topics_winner_against_a_weaker_late_event() -> None:
    """A new app id: the table is empty, the state topic holds the winner and a marker past
    it. Judged against nothing, a weaker event read after the marker would replace it."""
    old = Harness()
    written = old.feed(_jti(1, 3600))
    fresh = Harness()
    fresh.processor.seed(0, _state_records(written))
    weaker = encode(TokenRevoked(id=uid(2), issuer="i", jti="j1", expires_at=at(60)))
    assert fresh.processor.seeding(0)
    assert _state(fresh.feed(weaker)) == [], "the weaker event replaced the state's winner"
    assert not fresh.processor.seeding(0)
    assert fresh.processor.counters["seeded"] == 1
    assert fresh.processor.counters["superseded"] == 1


def test_seeding_verifies_the_state_records_and_skips_expired_ones() -> None:
    h = Harness()
    good, expired = _jti(1, 60), _jti(2, -10)
    forged = good.value.replace(b"j1", b"j3")
    h.processor.seed(
        0,
        [
            (good.value, good.headers[0][1]),
            (forged, good.headers[0][1]),
            (expired.value, expired.headers[0][1]),
        ],
    )
    h.tick()  # anything of the partition finishes the seeding first
    assert h.rule_keys() == [b"0|jti:j1"]
    assert h.processor.counters["seed_skipped.bad_signature"] == 1
    assert h.processor.counters["seeded"] == 1


def test_seeding_goes_slice_by_slice_and_its_writes_hold_the_next_marker_back() -> None:
    h, changelog = _with_tracked_changelog()
    h.processor.arm(0, 5)
    h.processor.seed(0, _state_records([o for n in range(5) for o in Harness().feed(_jti(n, 60))]))
    h.processor.seed_step(0, budget=2)
    assert len(h.rule_keys()) == 2
    assert h.processor.seeding(0)
    assert _markers(h.tick()) == [], "the seeded rules are not in the changelog yet"
    assert not h.processor.seeding(0)
    assert len(h.rule_keys()) == 5
    for send in changelog:
        send.ack()
    assert _markers(h.tick()) == [4]


def test_a_partition_seeded_again_merges_the_newer_read_only() -> None:
    """The worker may hand a partition's state over again before the agent merged the first
    read (an on_rebalance_complete that resumes after a rebalance began): the newer read
    replaces the pending one instead of doubling the memory and the merge time."""
    h = Harness()
    records = _state_records([o for n in range(3) for o in Harness().feed(_jti(n, 60))])
    h.processor.seed(0, records)
    h.processor.seed(0, records)
    h.processor.seed_step(0, budget=len(records))
    assert not h.processor.seeding(0)
    assert h.processor.counters["seeded"] == 3


def test_a_held_partition_writes_nothing_until_it_is_assigned_again() -> None:
    h = Harness()
    h.processor.hold(0)
    assert h.feed(_jti(1, 60)) == []
    assert h.tick() == []
    assert h.processor.counters["held_records"] == 1
    assert h.rule_keys() == []
    h.processor.forget_partitions()
    assert [o.key for o in _state(h.feed(_jti(1, 60)))] == [_sk(_jti(1, 60))]


def test_a_seed_cut_short_by_a_rebalance_holds_the_partition_until_it_is_armed_again() -> None:
    """faust does not wait for the agent's current event in a rebalance
    (``stream_wait_empty=False``): the agent, between two seed slices, resumes after
    ``forget_partitions`` and hands that event over. Judged against the half-seeded table, a
    weaker event would replace the state topic's winner in the state topic."""
    old = Harness()
    written = [o for n in range(3) for o in old.feed(_jti(n, 3600))]
    fresh = Harness()
    fresh.processor.arm(0, 5)
    fresh.processor.seed(0, _state_records(written))
    fresh.processor.seed_step(0, budget=1)  # the agent yields between slices ...
    fresh.processor.forget_partitions()  # ... and a rebalance starts meanwhile
    assert not fresh.processor.seeding(0)
    weaker = encode(TokenRevoked(id=uid(9), issuer="i", jti="j2", expires_at=at(60)))
    assert fresh.feed(weaker) == [], "the weaker event was judged against a half-seeded table"
    assert fresh.tick() == []
    assert fresh.processor.counters["held_records"] == 1
    # Assigned again: the worker re-arms the partition and seeds it again.
    fresh.processor.arm(0, 5)
    fresh.processor.seed(0, _state_records(written))
    assert _state(fresh.feed(weaker)) == []
    assert fresh.processor.counters["superseded"] == 1
    # A partition the rebalance found seeded is not held.
    fresh.processor.forget_partitions()
    assert [o.key for o in _state(fresh.feed(_jti(7, 60)))] == [_sk(_jti(7, 60))]


def test_a_repair_and_a_sweep_pass_over_the_recorded_marker() -> None:
    h = Harness()
    for send in h.publish(h.feed(_jti(1, 60))):
        send.ack()
    assert _markers(h.tick()) == [0]
    h.processor.resync(0)
    h.processor.forget_partitions()  # the expiry heap is rebuilt from the table
    h.clock.now += 3600
    repair = _state(h.tick())
    assert [(o.key, o.value) for o in repair] == [(_sk(_jti(1, 60)), None), (b"jti:j1", None)]
    assert h.processor.synced(0) == 0


# -- a paused worker resumed after another one took its partition over ---------------------


def test_late_writes_of_a_paused_worker_do_not_shadow_the_new_owners_rules() -> None:
    """faust has no fencing. Worker A processes a weak watermark and an unblock, then is
    paused past its session timeout before its writes go out; worker B takes the partition
    over, processes those and the stronger events after them (a later watermark, a new
    block) and marks past them. A resumes: its queued records land, and its next tick sweeps
    the unblock it saw expire. Keyed by rule, A's weak watermark and its tombstone of the
    unblock came last under B's keys: an SDK reading the compacted state topic (the last
    record per key) and the log after the last marker lost the strong watermark and the
    block."""
    weak = encode(
        SubjectTokensRevoked(
            id=uid(1), issuer="i", sub="u", issued_before=at(-60), expires_at=at(3600)
        )
    )
    unblock = encode(
        SubjectUnblocked(id=uid(2), issuer="i", sub="v", occurred_at=at(-5), expires_at=at(10))
    )
    strong = encode(
        SubjectTokensRevoked(
            id=uid(3), issuer="i", sub="u", issued_before=at(0), expires_at=at(3600)
        )
    )
    block = encode(SubjectBlocked(id=uid(4), issuer="i", sub="v", occurred_at=at(0)))
    later = _jti(5, 3600)
    log = [weak, unblock, strong, block, later]
    a, b = Harness(), Harness()
    queued = a.feed(weak) + a.feed(unblock)  # A pauses before these go out
    landed = [o for e in log[:4] for o in b.feed(e)] + b.tick()
    a.clock.now = b.clock.now = at(20).timestamp()  # the unblock expired meanwhile
    landed += queued + a.tick()  # A resumes
    landed += b.feed(later) + b.tick()  # the new owner marks past it
    last: dict[bytes, Output] = {}
    marker = -1
    for out in _state(landed):
        offset = _marker_offset(out.key, out.value)
        if offset is None:
            last[out.key] = out
        else:
            marker = offset
    assert marker == 4

    def snapshot(records: Sequence[tuple[bytes, Sequence[tuple[str, bytes]]]]) -> object:
        sdk = RevocationState(clock=b.clock, max_token_lifetime=3600)
        for value, headers in records:
            sdk.apply(VERIFYING_CODEC.decode(value, headers))
        return sdk.snapshot()

    kept = [(o.value, o.headers) for o in last.values() if o.value is not None]
    after = [(e.value, e.headers) for e in log[marker + 1 :]]
    assert snapshot(kept + after) == snapshot([(e.value, e.headers) for e in log])


# -- crash and restart against a fake broker ------------------------------------------


class Broker:
    """Topics as lists of landed records. Each topic keeps its sends in order (one
    producer, one partition: a record lands only after the ones sent before it landed or
    failed); a crash loses whatever is still in flight."""

    def __init__(self) -> None:
        self.landed: dict[str, list[tuple[bytes, bytes | None, tuple[tuple[str, bytes], ...]]]]
        self.landed = {"state": [], "changelog": [], "stats": [], "alerts": []}
        self.inflight: dict[
            str, deque[tuple[Send, bytes, bytes | None, tuple[tuple[str, bytes], ...]]]
        ]
        self.inflight = {topic: deque() for topic in self.landed}

    def send(
        self,
        topic: str,
        key: bytes,
        value: bytes | None,
        headers: tuple[tuple[str, bytes], ...] = (),
    ) -> Send:
        send = Send()
        self.inflight[topic].append((send, key, value, headers))
        return send

    def resolve(self, topic: str, ok: bool) -> None:
        if self.inflight[topic]:
            send, key, value, headers = self.inflight[topic].popleft()
            if ok:
                self.landed[topic].append((key, value, headers))
                send.ack()
            else:
                send.fail()

    def settle(self) -> None:
        for topic in self.inflight:
            while self.inflight[topic]:
                self.resolve(topic, ok=True)

    def crash(self) -> None:
        for queue in self.inflight.values():
            queue.clear()


class ChangeloggedTable(dict[bytes, bytes]):
    """A rules table whose writes go through the broker's changelog, as faust's do."""

    def __init__(self, broker: Broker) -> None:
        super().__init__()
        self.broker = broker
        self.processor: Processor | None = None
        for key, value, _ in broker.landed["changelog"]:  # recovery: the last write wins
            if value is None:
                super().pop(key, None)
            else:
                super().__setitem__(key, value)

    def _sent(self, key: bytes, value: bytes | None) -> None:
        send = self.broker.send("changelog", key, value)
        assert self.processor is not None
        self.processor.track(int(key.split(b"|")[0]), send)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        self._sent(key, value)

    def __delitem__(self, key: bytes) -> None:
        super().__delitem__(key)
        self._sent(key, None)


class SimWorker:
    """One incarnation of the worker on log partition 0: resumes after the last marker that
    landed in the state topic, with the table recovered from the changelog and, when that is
    not in step with the marker, seeded from the state topic (as ``streams.app`` does)."""

    def __init__(self, broker: Broker, log: list[EncodedEvent]) -> None:
        self.broker = broker
        self.log = log
        table = ChangeloggedTable(broker)
        self.processor = Processor(
            codec=VERIFYING_CODEC, log_topic="log", rules=table, windows={}, clock=Clock()
        )
        table.processor = self.processor
        marked = _last_marker(broker)
        self.position = 0 if marked is None else marked + 1
        self.processor.arm(0, self.position)
        if self.processor.synced(0) != marked:
            self.processor.seed(
                0,
                [
                    (value, dict(headers).get(SIGNATURE_HEADER))
                    for key, value, headers in broker.landed["state"]
                    if value is not None and not key.startswith(b"__")
                ],
            )

    def publish(self, outputs: list[Output]) -> None:
        for out in outputs:
            send = self.broker.send(out.sink, out.key, out.value, out.headers)
            self.processor.sent(out, send)

    def record(self) -> None:
        if self.position < len(self.log):
            encoded = self.log[self.position]
            self.publish(
                self.processor.on_record(
                    partition=0,
                    offset=self.position,
                    timestamp=T0.timestamp(),
                    value=encoded.value,
                    headers=list(encoded.headers),
                )
            )
            self.position += 1

    def tick(self) -> None:
        self.publish(self.processor.on_tick(0))


def test_seeding_again_rewrites_a_winner_whose_changelog_write_failed() -> None:
    """A rebalance drops the repair a failed changelog write asked for; the worker keeps the
    partition, its table is still not in step, so it is seeded again. The winner already in
    the in-memory table must be written again: otherwise the next marker is recorded as
    synced while the changelog lacks it, and after a crash nothing seeds it back."""
    broker = Broker()
    state = _state_records(Harness().feed(_jti(1, 3600)))
    table = ChangeloggedTable(broker)
    processor = Processor(
        codec=VERIFYING_CODEC, log_topic="log", rules=table, windows={}, clock=Clock()
    )
    table.processor = processor
    processor.arm(0, 5)  # the state topic's last marker is 4
    processor.seed(0, state)
    processor.on_tick(0)
    broker.resolve("changelog", ok=False)  # the seeded jti:j1 never reaches the changelog
    processor.forget_partitions()
    assert processor.synced(0) is None
    processor.arm(0, 5)
    processor.seed(0, state)
    for _ in range(3):
        processor.on_tick(0)
        broker.settle()
    assert processor.synced(0) == 4
    recovered = ChangeloggedTable(broker)  # kill -9: the table as its changelog has it
    assert b"0|__synced__" in recovered
    assert b"0|jti:j1" in recovered, "in step with marker 4 without the state's winner"


def _last_marker(broker: Broker) -> int | None:
    found = None
    for key, value, _ in broker.landed["state"]:
        offset = _marker_offset(key, value)
        found = found if offset is None else offset
    return found


def _best(events: list[Event]) -> dict[str, object]:
    best: dict[str, Event] = {}
    for event in events:
        key = rule_key(event)
        if key not in best or rank(event) > rank(best[key]):
            best[key] = event
    return {key: event.id for key, event in best.items()}


def _assert_no_gap(broker: Broker, log: list[EncodedEvent]) -> None:
    """What an SDK bootstrapping at any moment gets: the state topic read up to there, of
    which compaction may have kept only the last record per key, then the log after the last
    marker read. Every rule must have its winner, as replaying the whole log gives."""
    events = [VERIFYING_CODEC.decode(e.value, e.headers) for e in log]
    whole = _best(events)
    last: dict[bytes, tuple[bytes | None, tuple[tuple[str, bytes], ...]]] = {}
    for key, value, headers in broker.landed["state"]:
        offset = _marker_offset(key, value)
        if offset is None:
            last[key] = (value, headers)
            continue
        kept = [VERIFYING_CODEC.decode(v, h) for v, h in last.values() if v is not None]
        # Nothing expires here: a tombstone only removes an event that a kept record or a
        # record of the log after the marker beats.
        by_id = {str(event.id): event for event in events}
        read = kept + events[offset + 1 :]
        for gone_key, (gone_value, _) in last.items():
            if gone_value is None:
                rule, _, event_id = gone_key.decode().rpartition("#")
                gone = by_id[event_id]
                assert any(rule_key(k) == rule and rank(k) > rank(gone) for k in read), gone_key
        assert _best(read) == whole, f"gap behind marker {offset}"


_SIM_EVENTS = st.lists(
    st.tuples(st.sampled_from(["jti", "block", "unblock"]), st.integers(0, 2), st.integers(0, 50)),
    min_size=1,
    max_size=25,
)


def _sim_log(specs: list[tuple[str, int, int]]) -> list[EncodedEvent]:
    log = []
    for n, (kind, who, when) in enumerate(specs):
        event: Event
        if kind == "jti":
            event = TokenRevoked(id=uid(n), issuer="i", jti=f"j{who}", expires_at=at(3600 + when))
        elif kind == "block":
            event = SubjectBlocked(id=uid(n), issuer="i", sub=f"u{who}", occurred_at=at(-when))
        else:
            event = SubjectUnblocked(
                id=uid(n), issuer="i", sub=f"u{who}", occurred_at=at(-when), expires_at=at(3600)
            )
        log.append(encode(event))
    # A redelivery of an early record, as a producer retry writes it.
    return log + log[:1]


@hsettings(deadline=None, max_examples=300)
@given(
    specs=_SIM_EVENTS,
    seed=st.integers(0, 2**32 - 1),
    crashes=st.integers(1, 3),
    failures=st.sampled_from([0.0, 0.05, 0.3]),
    table_lost=st.sampled_from([0.0, 0.5]),
)
def test_no_marker_promises_a_write_a_crash_lost(
    specs: list[tuple[str, int, int]],
    seed: int,
    crashes: int,
    failures: float,
    table_lost: float,
) -> None:
    """kill -9 at any point, with any subset of the writes in flight lost (state records,
    changelog records, markers), any of them failed, restarting from the last marker that
    landed: at every moment the state topic has no gap behind any of its markers, and the
    last incarnation brings it to the log's end with every rule's winner. Also when a
    restart finds the table's changelog gone (a new app id, a deleted changelog topic) with
    probability ``table_lost``: a worker judging later events against an empty table would
    let a weaker one replace a winner the state topic holds."""
    rng = random.Random(seed)
    log = _sim_log(specs)
    broker = Broker()
    for _ in range(crashes):
        worker = SimWorker(broker, log)
        for _ in range(rng.randrange(1, 4 * len(log))):
            action = rng.random()
            if action < 0.4:
                worker.record()
            elif action < 0.55:
                worker.tick()
            elif busy := [topic for topic, queue in broker.inflight.items() if queue]:
                broker.resolve(rng.choice(busy), ok=rng.random() >= failures)
        broker.crash()
        _assert_no_gap(broker, log)
        if rng.random() < table_lost:
            broker.landed["changelog"].clear()
    worker = SimWorker(broker, log)
    for _ in range(len(log)):
        worker.record()
    for _ in range(3):  # a repair may need a tick of its own, then one to mark behind it
        worker.tick()
        broker.settle()
    assert _last_marker(broker) == len(log) - 1
    _assert_no_gap(broker, log)


OLD_LOG = uuid.UUID("11111111-1111-4111-8111-111111111111")
NEW_LOG = uuid.UUID("22222222-2222-4222-8222-222222222222")


def test_markers_and_the_tables_record_of_them_name_the_logs_incarnation() -> None:
    h = Harness(topic_id=NEW_LOG)
    for send in h.publish(h.feed(_jti(1, 60))):
        send.ack()
    [marker] = [o for o in h.tick() if o.is_marker]
    assert marker.value is not None
    assert _marker(marker).topic_id == NEW_LOG
    assert h.processor.synced(0) == 0
    assert not h.processor.other_incarnation(0)


@pytest.mark.parametrize(
    ("table_of", "now", "other"),
    [
        (NEW_LOG, NEW_LOG, False),
        (OLD_LOG, NEW_LOG, True),  # the log deleted and recreated under the same name
        (None, NEW_LOG, False),  # written before markers named an id: taken as this log's
        (OLD_LOG, None, False),  # a broker giving no id now: nothing tells
    ],
    ids=["same-log", "recreated-log", "table-without-id", "log-without-id"],
)
def test_a_table_in_step_with_a_marker_of_a_deleted_log_is_not_in_step(
    table_of: uuid.UUID | None, now: uuid.UUID | None, other: bool
) -> None:
    """The table (its changelog kept) records the old log's marker at the same offset as
    the state topic's last marker: the worker took the table as in step, kept the old log's
    rules and resumed the new log after that offset, skipping its records up to there."""
    old = Harness(topic_id=table_of)
    for send in old.publish(old.feed(_jti(1, 3600))):
        send.ack()
    old.tick()
    restarted = Harness(topic_id=now)
    restarted.rules.update(old.rules)  # the table recovered from its changelog
    assert restarted.processor.other_incarnation(0) is other
    assert restarted.processor.synced(0) == (None if other else 0)


def test_a_restarted_partition_drops_the_deleted_logs_rules_before_its_next_record() -> None:
    old = Harness(topic_id=OLD_LOG)
    for send in old.publish(old.feed(_jti(1, 3600))):
        send.ack()
    old.tick()
    old.feed(_jti(2, 3600), partition=1)
    h = Harness(topic_id=NEW_LOG)
    h.rules.update(old.rules)
    h.processor.restart(0, state_usable=True)
    h.processor.arm(0, 0)
    # The new log's first event, weaker than the deleted log's winner of the same jti.
    weaker = encode(TokenRevoked(id=uid(3), issuer="i", jti="j1", expires_at=at(60)))
    h.offset = -1
    [written] = _state(h.feed(weaker))
    assert written.value == weaker.value, "judged against the deleted log's rule"
    assert [k for k in h.rule_keys() if k.startswith(b"0|")] == [b"0|jti:j1"]
    assert b"1|jti:j2" in h.rules, "another partition's entries stay"
    assert h.processor.counters["log_recreated"] == 1
    assert h.processor.synced(0) is None


def test_no_marker_vouches_for_a_state_partition_holding_a_deleted_logs_rules() -> None:
    """A marker naming the new log on top of the old log's rule records: SDKs took those
    records for the new log's rules."""
    h = Harness(topic_id=NEW_LOG)
    h.processor.arm(0, 0)
    h.processor.restart(0, state_usable=False)
    h.processor.arm(1, 0)
    for partition in (0, 1):
        h.offset = -1
        for send in h.publish(h.feed(_jti(partition + 1, 60), partition=partition)):
            send.ack()
    assert _markers(h.tick(0)) == []
    assert h.processor.synced(0) is None
    assert _markers(h.tick(1)) == [0], "other partitions are marked as before"
    h.processor.forget_partitions()  # assigned again: decided afresh
    h.processor.arm(0, 0)
    h.offset = -1
    h.feed(_jti(1, 60))
    assert _markers(h.tick(0)) == [0]


def _marker_offset(key: bytes | None, value: bytes | None) -> int | None:
    """The offset a state record of partition 0 marks for the log ``log``, else None."""
    marker = read_marker(key, value, "log", 0)
    return None if marker is None else marker.offset
