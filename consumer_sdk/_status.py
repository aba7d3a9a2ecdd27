"""The status provider: where the data source stands, and since when."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from consumer_sdk._listeners import Listeners

__all__ = ["DataSourceState", "SourceErrorKind", "SourceStatus", "StatusProvider"]


class DataSourceState(enum.Enum):
    """The data source's condition, as LaunchDarkly's SDKs report it."""

    INITIALIZING = "initializing"
    """Replaying the topic; the state is not complete yet. Verify fails closed."""
    VALID = "valid"
    """Caught up with the topic at start, and tailing it."""
    INTERRUPTED = "interrupted"
    """Was valid, lost the connection; the last state serves for ``max_staleness``."""
    OFF = "off"
    """Closed. Verify fails closed."""


class SourceErrorKind(enum.Enum):
    """What kind of failure :attr:`SourceStatus.last_error` is, named by the code that
    recorded it. Unlike the error's text, which may name brokers, SASL users or file paths,
    the kind can be shown to anyone (the health endpoint reports it, never the text)."""

    KAFKA_UNREACHABLE = "kafka_unreachable"
    """The Kafka consumer could not be created: no bootstrap server answered."""
    KAFKA_ERROR = "kafka_error"
    """A Kafka request failed once connected (timeout, lost broker)."""
    KAFKA_UNAUTHORIZED = "kafka_unauthorized"
    """Kafka refused this client: SASL authentication failed, or an ACL denies it the topic
    (which Kafka reports in place of its partitions, so it is not told as TOPIC_MISSING)."""
    TOPIC_MISSING = "topic_missing"
    """The revocation topic does not exist or has no partitions."""
    SYNC_STALLED = "sync_stalled"
    """The sync thread stopped coming round its loop (a revocation listener that blocks?)."""
    FORKED = "forked"
    """A forked process serving the state it inherited until its own source catches up."""
    SOURCE_ERROR = "source_error"
    """Any other failure, and any error reported without a kind (such as
    :meth:`consumer_sdk.testing.InMemorySource.interrupt`)."""


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One status report. ``since`` is when ``state`` was entered (an INTERRUPTED source that
    fails again keeps its original ``since``); times come from the SDK's clock.
    ``last_error`` is the error's text: for logs and code in the process, not for display
    to others (:attr:`error_kind` is)."""

    state: DataSourceState
    since: float
    last_error: str | None = None
    last_event_at: float | None = None
    since_monotonic: float | None = field(default=None, repr=False, compare=False)
    """The monotonic clock at ``since``, so that a step of the wall clock cannot lengthen how
    long the state has lasted (see :meth:`StatusProvider.elapsed`); None: unknown."""
    error_kind: SourceErrorKind | None = None
    """What kind of error ``last_error`` is: None exactly when there is none, SOURCE_ERROR
    when its text was given without a kind."""

    def __post_init__(self) -> None:
        if self.last_error is None:
            object.__setattr__(self, "error_kind", None)
        elif self.error_kind is None:
            object.__setattr__(self, "error_kind", SourceErrorKind.SOURCE_ERROR)


class StatusProvider:
    """Holds the current :class:`SourceStatus` and tells listeners about changes.

    Readers take :attr:`current` without a lock (an attribute read of an immutable object).
    Listeners are called after the lock is released.
    """

    def __init__(
        self, clock: Callable[[], float], *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self.current = SourceStatus(
            DataSourceState.INITIALIZING, since=clock(), since_monotonic=monotonic()
        )
        self.listeners: Listeners[SourceStatus] = Listeners("status")
        self.ready = threading.Event()
        """Set once VALID (the state has caught up), or once OFF (nothing left to wait for)."""

    def update(
        self,
        state: DataSourceState,
        error: str | None = None,
        *,
        kind: SourceErrorKind | None = None,
        since: float | None = None,
    ) -> SourceStatus:
        """Move to ``state`` with ``error`` of ``kind`` (default: SOURCE_ERROR); a new state
        starts now, or at ``since`` if given (earlier)."""
        with self._lock:
            old = self.current
            if old.state is DataSourceState.OFF:
                return old
            if state is DataSourceState.INTERRUPTED and old.state is DataSourceState.INITIALIZING:
                # Never valid yet: stay INITIALIZING (still fail-closed), but record the error.
                state = DataSourceState.INITIALIZING
            kind = None if error is None else kind or SourceErrorKind.SOURCE_ERROR
            if state is old.state and error == old.last_error and kind is old.error_kind:
                return old
            since_mono: float | None
            if state is not old.state:
                now, mono = self._clock(), self._monotonic()
                since_mono = mono if since is None else mono - max(0.0, now - since)
                since = now if since is None else since
            else:
                since, since_mono = old.since, old.since_monotonic
            new = SourceStatus(state, since, error, old.last_event_at, since_mono, kind)
            self.current = new
        if state is DataSourceState.VALID or state is DataSourceState.OFF:
            self.ready.set()  # on OFF: wakes wait_until_ready, which then answers False
        self.listeners.notify(new)
        return new

    def after_fork(self) -> None:
        """In a forked child: fresh lock; the inherited state serves as if interrupted."""
        self._lock = threading.Lock()
        self.ready = threading.Event()  # ready again once this process's source catches up
        old = self.current
        if old.state is DataSourceState.OFF:
            self.ready.set()
        if old.state is DataSourceState.VALID:
            self.current = SourceStatus(
                DataSourceState.INTERRUPTED,
                self._clock(),
                "forked",
                old.last_event_at,
                self._monotonic(),
                SourceErrorKind.FORKED,
            )

    def elapsed(self, status: SourceStatus) -> float:
        """Seconds since ``status.since``, as the longer of the wall and the monotonic clock
        measure it: a step back of either (NTP, a VM resumed) cannot lengthen a bound such as
        ``max_staleness``; a step forward may shorten it, which fails safe."""
        wall = self._clock() - status.since
        if status.since_monotonic is None:
            return wall
        return max(wall, self._monotonic() - status.since_monotonic)

    def serving_stale(self, status: SourceStatus, max_staleness: float) -> bool:
        """Whether ``status`` is an interruption young enough (``max_staleness``) for the
        last state to keep serving: what ``verify()`` and readiness both go by."""
        return status.state is DataSourceState.INTERRUPTED and self.elapsed(status) <= max_staleness
