"""The stall watch: a sync thread that stops coming round its loop is reported INTERRUPTED,
dated from its last loop, and VALID again once it moves."""

from __future__ import annotations

import threading

from consumer_sdk._stall import StallWatch, stall_after
from consumer_sdk._status import DataSourceState, SourceErrorKind

WALL = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Sink:
    def __init__(self) -> None:
        self.calls: list[tuple[DataSourceState, float | None]] = []

    def status(
        self,
        state: DataSourceState,
        error: str | None = None,
        *,
        kind: SourceErrorKind | None = None,
        since: float | None = None,
    ) -> None:
        self.calls.append((state, since))


def watch(mono: Clock, sink: Sink) -> StallWatch:
    return StallWatch(
        sink,  # type: ignore[arg-type]
        after=5.0,
        stop=threading.Event(),
        clock=lambda: WALL + mono.now,
        monotonic=mono,
    )


def test_a_thread_that_stops_looping_is_interrupted_from_its_last_loop_then_valid_again() -> None:
    mono, sink = Clock(), Sink()
    w = watch(mono, sink)
    w.beat()
    mono.now = 4.9
    assert not w.check()
    mono.now = 7.0
    assert w.check()
    assert sink.calls == [(DataSourceState.INTERRUPTED, WALL + 0.0)]  # since its last loop
    assert w.check()  # reported once
    assert len(sink.calls) == 1
    w.beat()
    assert sink.calls[-1] == (DataSourceState.VALID, None)
    mono.now = 8.0
    assert not w.check()


def test_a_thread_that_is_not_tailing_is_never_reported() -> None:
    mono, sink = Clock(), Sink()
    w = watch(mono, sink)
    assert not w.check()  # bootstrapping: INITIALIZING is already fail-closed
    w.beat()
    w.idle()  # the session ended: the source reports its own failure
    mono.now = 60.0
    assert not w.check()
    assert sink.calls == []


def test_the_stall_bound_leaves_room_for_an_idle_poll_and_reports_before_max_staleness() -> None:
    assert stall_after(30.0, 0.5) == 10.0
    assert stall_after(4.0, 0.5) == 2.0
    assert stall_after(0.0, 0.5) == 2.0
    assert stall_after(30.0, 8.0) == 17.0  # a long poll is not a stall
