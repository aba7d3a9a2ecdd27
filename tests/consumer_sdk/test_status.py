"""The status provider: how long a state has lasted survives steps of the wall clock, and
every error it records has a kind."""

from __future__ import annotations

from consumer_sdk._status import DataSourceState, SourceErrorKind, SourceStatus, StatusProvider
from tests.consumer_sdk._helpers import FakeClock

INTERRUPTED = DataSourceState.INTERRUPTED


def provider() -> tuple[StatusProvider, FakeClock, FakeClock]:
    wall, mono = FakeClock(start=1_000_000.0), FakeClock(start=50.0)
    return StatusProvider(wall, monotonic=mono), wall, mono


def test_a_state_lasts_as_long_as_the_longer_of_the_two_clocks_says() -> None:
    sp, wall, mono = provider()
    sp.update(DataSourceState.VALID)
    status = sp.update(INTERRUPTED, "down")
    wall.advance(-3600)  # stepped back: the monotonic clock still counts
    mono.advance(40)
    assert sp.elapsed(status) == 40
    wall.advance(3600 + 100)  # stepped forward past it: the shorter bound wins (fail safe)
    assert sp.elapsed(status) == 100


def test_a_state_dated_back_is_dated_back_on_the_monotonic_clock_too() -> None:
    sp, wall, _ = provider()
    sp.update(DataSourceState.VALID)
    status = sp.update(INTERRUPTED, "stalled", since=wall.now - 8)  # as the stall watch does
    assert status.since == wall.now - 8
    wall.advance(-3600)
    assert sp.elapsed(status) == 8


def test_the_monotonic_reading_follows_the_state_through_errors_and_events() -> None:
    sp, wall, mono = provider()
    sp.update(DataSourceState.VALID)
    sp.update(INTERRUPTED, "a")
    mono.advance(10)
    sp.update(INTERRUPTED, "b")  # fails again: keeps its original since
    wall.advance(-3600)
    mono.advance(5)
    assert sp.elapsed(sp.current) == 15


def test_a_forked_child_dates_its_interruption_on_both_clocks() -> None:
    sp, wall, mono = provider()
    sp.update(DataSourceState.VALID)
    mono.advance(100)
    sp.after_fork()
    wall.advance(-3600)
    mono.advance(3)
    assert sp.current.state is INTERRUPTED
    assert sp.elapsed(sp.current) == 3


def test_a_status_built_without_a_monotonic_reading_is_measured_on_the_wall_clock() -> None:
    sp, wall, _ = provider()
    assert sp.elapsed(SourceStatus(INTERRUPTED, since=wall.now - 7)) == 7


def test_the_monotonic_reading_is_not_part_of_a_status_value() -> None:
    a = SourceStatus(INTERRUPTED, 1.0, since_monotonic=5.0)
    assert a == SourceStatus(INTERRUPTED, 1.0)
    assert "monotonic" not in repr(a)


def test_an_error_recorded_without_a_kind_is_a_source_error_and_no_error_has_no_kind() -> None:
    sp, _, _ = provider()
    sp.update(DataSourceState.VALID)
    assert sp.update(INTERRUPTED, "down").error_kind is SourceErrorKind.SOURCE_ERROR
    back = sp.update(DataSourceState.VALID)
    assert (back.last_error, back.error_kind) == (None, None)
    assert SourceStatus(INTERRUPTED, 1.0, "down").error_kind is SourceErrorKind.SOURCE_ERROR
    no_error = SourceStatus(INTERRUPTED, 1.0, error_kind=SourceErrorKind.KAFKA_ERROR)
    assert no_error.error_kind is None


def test_the_same_text_of_another_kind_is_a_new_status_for_listeners() -> None:
    sp, _, _ = provider()
    sp.update(DataSourceState.VALID)
    seen: list[SourceErrorKind | None] = []
    sp.listeners.add(lambda status: seen.append(status.error_kind))
    sp.update(INTERRUPTED, "down", kind=SourceErrorKind.KAFKA_UNREACHABLE)
    sp.update(INTERRUPTED, "down", kind=SourceErrorKind.KAFKA_UNREACHABLE)  # no change
    sp.update(INTERRUPTED, "down", kind=SourceErrorKind.KAFKA_ERROR)
    assert seen == [SourceErrorKind.KAFKA_UNREACHABLE, SourceErrorKind.KAFKA_ERROR]
    assert sp.current.error_kind is SourceErrorKind.KAFKA_ERROR
