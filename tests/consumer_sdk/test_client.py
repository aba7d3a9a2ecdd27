"""Revocast driven by the in-memory source: revocation, fail-closed/open, listeners, stats."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from consumer_sdk import (
    DataSourceState,
    FailurePolicy,
    Revocast,
    RevocationState,
    RevokedBy,
    SourceStatus,
    StateUnavailableError,
    TokenRevokedError,
    replay,
)
from consumer_sdk._source import Headers, UpdateSink
from consumer_sdk.testing import InMemorySource
from revocation_events import (
    Event,
    EventCodec,
    EventSigner,
    EventVerifier,
    KeyRevoked,
    SessionRevoked,
    SigningKey,
    SubjectBlocked,
    SubjectTokensRevoked,
    TokenRevoked,
)
from tests.consumer_sdk._helpers import EVENT_KEY, SECRET, FakeClock, dt, settings, token


class Rec:
    def __init__(self, value: bytes | None, headers: tuple[tuple[str, bytes], ...] = ()) -> None:
        self.value = value
        self.headers = headers


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def src() -> InMemorySource:
    return InMemorySource()


@pytest.fixture
def rc(src: InMemorySource, clock: FakeClock) -> Iterator[Revocast]:
    client = Revocast(settings(), source=src, clock=clock)
    yield client
    client.close()


def test_verify_fails_closed_before_the_source_is_ready(rc: Revocast, src: InMemorySource) -> None:
    with pytest.raises(StateUnavailableError, match="initializing"):
        rc.verify(token())
    assert not rc.wait_until_ready(0)
    src.set_ready()
    assert rc.wait_until_ready(0)
    assert rc.verify(token(jti="ok"))["jti"] == "ok"


def test_revoked_jti_raises_token_revoked_with_rule_and_time(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    src.set_ready()
    src.publish(
        TokenRevoked(
            issuer="i", jti="bad", occurred_at=dt(clock.now), expires_at=dt(clock.now + 600)
        )
    )
    with pytest.raises(TokenRevokedError) as info:
        rc.verify(token(jti="bad"))
    assert info.value.rule is RevokedBy.JTI
    assert info.value.revoked_at == dt(int(clock.now))
    assert "jti=bad" in info.value.detail
    assert rc.verify(token(jti="good"))["jti"] == "good"


def test_revoked_key_refuses_tokens_by_their_kid_header(rc: Revocast, src: InMemorySource) -> None:
    src.set_ready()
    src.publish(KeyRevoked(issuer="i", kid="k1"))
    with pytest.raises(TokenRevokedError) as info:
        rc.verify(token())
    assert info.value.rule is RevokedBy.KEY


@pytest.mark.parametrize("cache_size", [0, 16], ids=["uncached", "verify-cache"])
def test_revoking_the_single_static_key_refuses_its_tokens_whatever_kid_they_name(
    src: InMemorySource, clock: FakeClock, cache_size: int
) -> None:
    # One static key verifies a token whatever its kid header says, so a holder of the leaked
    # key could name another kid, or none, and get past a revocation looked up by header only.
    client = Revocast(settings(verify_cache_size=cache_size), source=src, clock=clock)
    try:
        src.set_ready()
        forged = [token(kid=kid, at=clock.now) for kid in ("k1", None, "zzz")]
        for t in forged:
            client.verify(t)  # accepted (and, with the cache, remembered) before the revocation
        src.publish(KeyRevoked(issuer="i", kid="zzz"))  # a kid named only in a header
        with pytest.raises(TokenRevokedError, match="kid=zzz"):
            client.verify(forged[2])
        assert client.verify(forged[0])["sub"] == "alice"
        src.publish(KeyRevoked(issuer="i", kid="k1"))
        for t in forged[:2]:  # (the third names the revoked "zzz")
            with pytest.raises(TokenRevokedError, match="kid=k1") as info:
                client.verify(t)
            assert info.value.rule is RevokedBy.KEY
    finally:
        client.close()


def test_with_several_keys_revoking_one_leaves_the_others_tokens_valid(
    src: InMemorySource, clock: FakeClock
) -> None:
    keys = {"k1": SECRET, "k2": b"k" * 32}
    client = Revocast(settings(jwt_keys=keys), source=src, clock=clock)
    try:
        src.set_ready()
        src.publish(KeyRevoked(issuer="i", kid="k2"))
        assert client.verify(token(kid="k1", at=clock.now))["sub"] == "alice"
        with pytest.raises(TokenRevokedError, match="kid=k2"):
            client.verify(token(key=keys["k2"], kid="k2", at=clock.now))
    finally:
        client.close()


def test_interrupted_source_serves_the_last_state_until_max_staleness(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    src.set_ready()
    src.interrupt("broker gone")
    assert rc.status.state is DataSourceState.INTERRUPTED
    assert rc.status.last_error == "broker gone"
    clock.advance(30)
    assert rc.verify(token())
    clock.advance(1)
    with pytest.raises(StateUnavailableError, match="interrupted"):
        rc.verify(token())
    src.set_ready()
    assert rc.verify(token())


@contextmanager
def _interrupted(src: InMemorySource, clock: FakeClock, mono: FakeClock) -> Iterator[Revocast]:
    """A client on both fake clocks whose stream has just broken."""
    with Revocast(settings(), source=src, clock=clock, monotonic=mono) as rc:
        src.set_ready()
        src.interrupt("broker gone")
        yield rc


def test_a_wall_clock_stepped_back_does_not_stretch_max_staleness(
    src: InMemorySource, clock: FakeClock
) -> None:
    mono = FakeClock(start=0.0)
    with _interrupted(src, clock, mono) as rc:
        clock.advance(-3600)  # NTP steps the wall clock back an hour while the stream is down
        mono.advance(30)
        assert rc.verify(token())
        mono.advance(1)
        with pytest.raises(StateUnavailableError, match=r"interrupted since 31\.0s"):
            rc.verify(token())


def test_a_wall_clock_stepped_forward_only_shortens_max_staleness(
    src: InMemorySource, clock: FakeClock
) -> None:
    with _interrupted(src, clock, FakeClock(start=0.0)) as rc:
        clock.advance(31)
        with pytest.raises(StateUnavailableError, match="interrupted"):
            rc.verify(token())


def test_repeated_interruptions_keep_the_first_since(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    src.set_ready()
    src.interrupt("a")
    since = rc.status.since
    clock.advance(20)
    src.interrupt("b")
    assert rc.status.since == since
    clock.advance(11)
    with pytest.raises(StateUnavailableError):
        rc.verify(token())


def test_fail_open_policy_accepts_when_the_state_is_unavailable_and_logs(
    src: InMemorySource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with Revocast(settings(failure_policy=FailurePolicy.ACCEPT), source=src, clock=clock) as rc:
        with caplog.at_level(logging.WARNING, "consumer_sdk"):
            assert rc.verify(token(jti="x"))["jti"] == "x"
        assert "failure_policy=accept" in caplog.text
        src.publish(TokenRevoked(issuer="i", jti="x", expires_at=dt(clock.now + 60)))
        with pytest.raises(TokenRevokedError):
            rc.verify(token(jti="x"))


def test_a_wall_clock_stepped_back_does_not_silence_the_fail_open_warning(
    src: InMemorySource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    mono = FakeClock(start=0.0)
    accept = settings(failure_policy=FailurePolicy.ACCEPT)
    with (
        Revocast(accept, source=src, clock=clock, monotonic=mono) as rc,
        caplog.at_level(logging.WARNING, "consumer_sdk"),
    ):
        rc.verify(token())
        rc.verify(token())  # within 10 s: suppressed
        clock.advance(-3600)
        mono.advance(11)
        rc.verify(token())
    assert caplog.text.count("failure_policy=accept") == 2
    assert "(1 similar suppressed)" in caplog.text


def test_close_turns_status_off_and_verify_fails_closed(rc: Revocast, src: InMemorySource) -> None:
    src.set_ready()
    rc.close()
    assert rc.status.state is DataSourceState.OFF
    assert src.closed
    src.set_ready()
    assert rc.status.state is DataSourceState.OFF
    with pytest.raises(StateUnavailableError, match="off"):
        rc.verify(token())


def test_status_listeners_see_each_change_and_can_be_removed(
    rc: Revocast, src: InMemorySource
) -> None:
    seen: list[SourceStatus] = []
    remove = rc.add_status_listener(seen.append)
    src.set_ready()
    src.interrupt("x")
    remove()
    src.set_ready()
    assert [s.state for s in seen] == [DataSourceState.VALID, DataSourceState.INTERRUPTED]


def test_failing_listener_is_logged_and_does_not_stop_others(
    rc: Revocast, src: InMemorySource, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    got: list[Event] = []
    rc.add_revocation_listener(broken)
    rc.add_revocation_listener(got.append)
    event = SessionRevoked(issuer="i", sid="s", expires_at=dt(time.time() + 60))
    with caplog.at_level(logging.ERROR, "consumer_sdk"):
        src.publish(event)
        src.publish(event)
    assert got == [event], "listeners hear only events that changed the state"
    assert "revocation listener" in caplog.text


def test_raw_records_are_authenticated_and_bad_ones_counted_by_reason(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    good = codec.encode(SubjectBlocked(issuer="i", sub="alice"))
    forged = EventCodec(signer=EventSigner(SigningKey.hmac("ev1", b"f" * 32))).encode(
        SubjectBlocked(issuer="i", sub="bob")
    )
    src.publish_raw(b"not json", good.headers)
    src.publish_raw(forged.value, forged.headers)
    src.publish_raw(good.value)
    src.publish_raw(good.value, good.headers)
    src.set_ready()
    stats = rc.stats()
    assert stats["skipped"] == {"bad_signature": 2, "unsigned": 1}
    assert stats["applied"] == {"subject.blocked": 1}
    assert stats["entries"]["blocked"] == 1
    with pytest.raises(TokenRevokedError):
        rc.verify(token(sub="alice"))
    assert rc.verify(token(sub="bob"))


def test_status_reports_the_last_event_time(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    assert rc.status.last_event_at is None
    src.publish(SessionRevoked(issuer="i", sid="s", expires_at=dt(clock.now + 60)))
    assert rc.status.last_event_at == clock.now


def test_tick_expires_entries_through_the_sink(
    rc: Revocast, src: InMemorySource, clock: FakeClock
) -> None:
    src.publish(TokenRevoked(issuer="i", jti="j", expires_at=dt(clock.now + 60)))
    assert rc.stats()["entries"]["jti"] == 1
    clock.advance(61)
    src.tick()
    assert rc.stats()["entries"]["jti"] == 0


def test_a_wall_clock_stepped_back_does_not_pause_the_expiry_sweeps(
    src: InMemorySource, clock: FakeClock
) -> None:
    mono = FakeClock(start=0.0)
    with Revocast(settings(), source=src, clock=clock, monotonic=mono) as rc:
        src.tick()  # sweeps now, next in expire_interval
        clock.advance(-3600)
        src.publish(TokenRevoked(issuer="i", jti="j", expires_at=dt(clock.now + 60)))
        clock.advance(61)
        mono.advance(rc.settings.expire_interval)
        src.tick()
        assert rc.stats()["entries"]["jti"] == 0


def test_events_published_before_start_are_delivered_in_order(clock: FakeClock) -> None:
    src = InMemorySource()
    src.publish(
        SubjectTokensRevoked(
            issuer="i", sub="alice", issued_before=dt(clock.now + 5), expires_at=dt(clock.now + 99)
        )
    )
    src.set_ready()
    with Revocast(settings(), source=src, clock=clock) as rc:
        assert rc.status.state is DataSourceState.VALID
        with pytest.raises(TokenRevokedError) as info:
            rc.verify(token(sub="alice"))
        assert info.value.rule is RevokedBy.SUBJECT_WATERMARK


def test_replay_helper_applies_records_and_counts_skips(clock: FakeClock) -> None:
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    events = [
        TokenRevoked(
            issuer="i", jti=f"j{n}", expires_at=dt(clock.now + timedelta(hours=1).total_seconds())
        )
        for n in range(3)
    ]
    records = [Rec(codec.encode(e).value, codec.encode(e).headers) for e in events]
    records.insert(1, Rec(None))
    records.append(records[0])
    state = RevocationState(clock=clock, max_token_lifetime=3600)
    verifying = EventCodec(verifier=EventVerifier([EVENT_KEY.verification_key()]))
    stats = replay(records, state, verifying)
    assert stats.applied == {"token.revoked": 3}
    assert stats.unchanged == {"token.revoked": 1}
    assert stats.skipped == {"invalid": 1}
    assert stats.records == 5
    assert state.size_by_kind()["jti"] == 3


def test_a_fetched_batch_is_counted_applied_and_notified_exactly_like_records_one_by_one(
    clock: FakeClock,
) -> None:
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    forger = EventCodec(signer=EventSigner(SigningKey.hmac("ev1", b"f" * 32)))
    events: list[Event] = [
        TokenRevoked(issuer="i", jti="a", expires_at=dt(clock.now + 60)),
        TokenRevoked(issuer="i", jti="a", expires_at=dt(clock.now + 60)),  # unchanged
        TokenRevoked(issuer="i", jti="old", expires_at=dt(clock.now - 60)),  # expired
        SessionRevoked(issuer="i", sid="s", expires_at=dt(clock.now + 60)),
        SubjectBlocked(issuer="i", sub="alice"),
        KeyRevoked(issuer="i", kid="leaked"),
    ]
    records = [Rec(codec.encode(e).value, codec.encode(e).headers) for e in events]
    forged = forger.encode(SubjectBlocked(issuer="i", sub="bob"))
    records[3:3] = [
        Rec(b"not json", records[0].headers),
        Rec(forged.value, forged.headers),
        Rec(codec.encode(events[0]).value),
        Rec(None),
    ]
    seen: dict[str, list[Event]] = {}
    results = []
    for batched in (False, True):
        client = Revocast(settings(), source=InMemorySource(), clock=clock)
        notified = seen.setdefault(str(batched), [])
        client.add_revocation_listener(notified.append)
        sink = client._sink
        if batched:
            sink.records(records)
        else:
            for r in records:
                sink.record(r.value, r.headers)
        results.append(
            (client.stats(), client.state.snapshot(), client.status.last_event_at, notified)
        )
        client.close()
    assert results[0] == results[1]
    stats = results[1][0]
    assert stats["applied"] == {
        "token.revoked": 1,
        "session.revoked": 1,
        "subject.blocked": 1,
        "key.revoked": 1,
    }
    assert stats["unchanged"] == {"token.revoked": 2}
    assert stats["skipped"] == {"bad_signature": 2, "unsigned": 1, "invalid": 1}


@pytest.mark.parametrize("batched", [False, True], ids=["record", "fetched-batch"])
def test_propagation_delay_histogram_counts_only_events_applied_after_bootstrap(
    src: InMemorySource, clock: FakeClock, batched: bool
) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    registry = prometheus_client.REGISTRY
    service = f"delay-histogram-test-{batched}"
    labels = {"service": service}

    def observed() -> float:
        return registry.get_sample_value("revocast_propagation_delay_seconds_count", labels) or 0

    def applied() -> float:
        return (
            registry.get_sample_value(
                "revocast_events_applied_total", {**labels, "type": "token.revoked"}
            )
            or 0
        )

    client = Revocast(settings(service_name=service), source=src, clock=clock)
    codec = EventCodec(signer=EventSigner(EVENT_KEY))

    def deliver(*events: Event) -> None:
        if batched:  # as the Kafka source hands over a fetch: counters added once per batch
            encoded = [codec.encode(e) for e in events]
            client._sink.records([Rec(r.value, r.headers) for r in encoded])
        else:
            for e in events:
                src.publish(e)

    try:
        old = dt(clock() - 3600)
        deliver(
            *(
                TokenRevoked(
                    issuer="idp", jti=f"r{i}", expires_at=dt(clock() + 60), occurred_at=old
                )
                for i in range(3)
            )
        )
        assert (applied(), observed()) == (3, 0)  # hour-old events from the replay
        src.set_ready()
        deliver(
            TokenRevoked(issuer="idp", jti="live", expires_at=dt(clock() + 60)),
            TokenRevoked(issuer="idp", jti="live", expires_at=dt(clock() + 60)),  # unchanged
            TokenRevoked(issuer="idp", jti="live2", expires_at=dt(clock() + 60)),
        )
        assert (applied(), observed()) == (5, 2)
    finally:
        client.close()


@pytest.mark.parametrize("batched", [False, True], ids=["record", "fetched-batch"])
def test_a_record_the_codec_fails_on_is_skipped_as_invalid_and_the_next_ones_still_apply(
    clock: FakeClock, caplog: pytest.LogCaptureFixture, batched: bool
) -> None:
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    events = [
        TokenRevoked(issuer="i", jti=f"j{i}", expires_at=dt(clock.now + 60)) for i in range(2)
    ]
    encoded = [codec.encode(e) for e in events]
    records = [
        Rec(encoded[0].value, encoded[0].headers),
        Rec(b"hostile"),
        Rec(encoded[1].value, encoded[1].headers),
    ]
    client = Revocast(settings(), source=InMemorySource(), clock=clock)
    sink = client._sink
    real = sink._codec.decode

    def decode(value: bytes | None, headers: Headers = ()) -> Event:
        if value == b"hostile":  # e.g. a RecursionError from deeply nested JSON
            raise RecursionError("maximum recursion depth exceeded")
        return real(value, headers)

    sink._codec.decode = decode  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.WARNING, logger="consumer_sdk"):
            if batched:
                sink.records(records)
            else:
                for r in records:
                    sink.record(r.value, r.headers)
        stats = client.stats()
        assert stats["applied"] == {"token.revoked": 2}
        assert stats["skipped"] == {"invalid": 1}
        assert "RecursionError" in caplog.text  # with its traceback, for whoever fixes the codec
    finally:
        client.close()


def test_fail_open_policy_still_refuses_once_the_client_is_closed(
    src: InMemorySource, clock: FakeClock
) -> None:
    rc = Revocast(settings(failure_policy=FailurePolicy.ACCEPT), source=src, clock=clock)
    src.set_ready()
    rc.close()
    with pytest.raises(StateUnavailableError, match="off"):
        rc.verify(token())


def test_wait_until_ready_is_false_at_once_after_close_even_if_it_was_ready(
    rc: Revocast, src: InMemorySource
) -> None:
    src.set_ready()
    assert rc.wait_until_ready(0)
    rc.close()
    assert rc.wait_until_ready(0) is False


def test_close_wakes_a_thread_blocked_in_wait_until_ready(rc: Revocast) -> None:
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(rc.wait_until_ready(60)), daemon=True)
    waiter.start()
    rc.close()
    waiter.join(10)
    assert result == [False]


def test_wait_until_ready_answers_at_once_in_a_forked_child_of_a_closed_client(
    rc: Revocast,
) -> None:
    rc.close()
    rc._after_fork_in_child()  # what the os.register_at_fork hook does in the child
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(rc.wait_until_ready(60)), daemon=True)
    waiter.start()
    waiter.join(10)
    assert result == [False]


class _CountingSource(InMemorySource):
    def __init__(self) -> None:
        super().__init__()
        self.starts = 0

    def start(self, sink: UpdateSink) -> None:
        self.starts += 1
        super().start(sink)


def test_a_client_closed_in_a_forked_child_is_not_restarted_by_status_or_verify(
    clock: FakeClock,
) -> None:
    src = _CountingSource()
    rc = Revocast(settings(), source=src, clock=clock)
    src.set_ready()
    rc._after_fork_in_child()  # what the os.register_at_fork hook does in the child
    rc.close()
    assert rc.status.state is DataSourceState.OFF
    assert not rc.wait_until_ready(0)
    with pytest.raises(StateUnavailableError):
        rc.verify(token())
    assert src.starts == 1
    assert src.closed


def test_a_listener_calling_sys_exit_does_not_end_the_sync_thread(
    rc: Revocast, src: InMemorySource, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    def exits(event: Event) -> None:
        raise SystemExit(1)  # sys.exit() on a thread other than the main one ends only it

    rc.add_revocation_listener(exits)
    src.set_ready()
    expires = dt(clock.now + 600)

    def sync_thread() -> None:  # the source's own thread, as for Kafka
        src.publish(TokenRevoked(issuer="i", jti="first", expires_at=expires))
        src.publish(TokenRevoked(issuer="i", jti="second", expires_at=expires))

    with caplog.at_level(logging.ERROR, "consumer_sdk"):
        thread = threading.Thread(target=sync_thread)
        thread.start()
        thread.join(10)
    with pytest.raises(TokenRevokedError):
        rc.verify(token(jti="second"))
    assert "revocation listener" in caplog.text


class _StuckThread:
    """A background thread that ignores its stop until released; ``close`` joins it as the
    real ones do (source, JWKS refresher, heartbeat)."""

    def __init__(self, release: threading.Event) -> None:
        self.timeouts: list[float] = []
        self._thread = threading.Thread(target=release.wait, daemon=True)
        self._thread.start()

    def start(self, sink: UpdateSink | None = None) -> None:
        pass

    def stop(self) -> None:  # the heartbeat is told to stop before the source closes
        pass

    def close(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        self._thread.join(timeout)


class _StuckSource(InMemorySource):
    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.stuck = _StuckThread(release)

    def close(self, timeout: float) -> None:
        super().close(timeout)
        self.stuck.close(timeout)


def test_close_waits_for_all_its_threads_within_one_timeout_not_one_each(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    src = _StuckSource(release)
    rc = Revocast(settings(), source=src, clock=clock)
    jwks, heartbeat = _StuckThread(release), _StuckThread(release)
    monkeypatch.setattr(rc._verifier, "jwks", jwks)
    monkeypatch.setattr(rc, "_heartbeat", heartbeat)
    try:
        started = time.monotonic()
        rc.close(timeout=0.5)
        took = time.monotonic() - started
    finally:
        release.set()
    assert took < 1.0, f"close(0.5) took {took:.2f}s"  # one timeout, not three (1.5 s)
    assert src.closed
    given = src.stuck.timeouts + jwks.timeouts + heartbeat.timeouts
    assert len(given) == 3
    assert sum(given) <= 0.5 + 0.2


def test_an_hmac_snapshot_key_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    shared = SigningKey.hmac("snap", b"s" * 32).verification_key()
    with caplog.at_level(logging.WARNING, "consumer_sdk"):
        Revocast(settings(snapshot_keys=(shared,)), source=InMemorySource()).close()
    assert "snapshot_keys include an HMAC key" in caplog.text
    caplog.clear()
    public = SigningKey.ed25519("snap", Ed25519PrivateKey.generate()).verification_key()
    with caplog.at_level(logging.WARNING, "consumer_sdk"):
        Revocast(settings(snapshot_keys=(public,)), source=InMemorySource()).close()
    assert "HMAC" not in caplog.text
