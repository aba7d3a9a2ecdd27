"""A watch on the sync thread: a thread that stops coming round its loop is a stream down.

The sync thread applies revocations and calls revocation listeners (application code) in
between. If it stops moving (a listener that blocks, a client call that hangs) nothing new is
applied, yet the status would stay VALID and ``verify()`` would serve the last state forever.
:class:`StallWatch` reports such a stall as INTERRUPTED, dated from the last time the thread
came round, so the usual bound applies: ``max_staleness`` later the failure policy decides
(by default: refuse). It reports VALID again as soon as the thread moves on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from consumer_sdk._source import UpdateSink
from consumer_sdk._status import DataSourceState, SourceErrorKind

__all__ = ["StallWatch", "stall_after"]


def stall_after(max_staleness: float, poll_timeout: float) -> float:
    """Seconds without a loop before the thread counts as stalled: long enough for an idle
    poll or a slow metadata call not to flap the status, short enough to report well
    before the bound."""
    return max(min(10.0, max(1.0, max_staleness / 2)), 2 * poll_timeout + 1.0)


class StallWatch:
    """Owned by a source: the sync thread calls :meth:`beat` on every loop while it tails
    (caught up) and :meth:`idle` when it leaves the loop; one daemon thread checks."""

    def __init__(
        self,
        sink: UpdateSink,
        *,
        after: float,
        stop: threading.Event,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "revocast-stall-watch",
    ) -> None:
        self._sink = sink
        self._monotonic = monotonic
        self._after = after
        self._stop = stop
        self._clock = clock
        self._lock = threading.Lock()
        self._last: float | None = None  # monotonic time of the last loop while tailing
        self._stalled = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def beat(self) -> None:
        """Sync thread: one more loop while tailing."""
        if self._stalled:
            with self._lock:
                if self._stalled:
                    self._stalled = False
                    self._sink.status(DataSourceState.VALID)
        self._last = self._monotonic()

    def idle(self) -> None:
        """Sync thread: not tailing (reconnecting, bootstrapping): its own status applies."""
        self._last = None
        self._stalled = False

    def check(self) -> bool:
        """Report a stall if there is one; return whether the thread counts as stalled."""
        last = self._last
        if last is None or self._stalled:
            return self._stalled
        stalled_for = self._monotonic() - last
        if stalled_for < self._after:
            return False
        with self._lock:
            if self._last != last or self._stalled:
                return self._stalled  # it moved meanwhile (or was reported)
            self._stalled = True
            self._sink.status(
                DataSourceState.INTERRUPTED,
                f"revocation sync thread stalled for {stalled_for:.0f}s (no event applied "
                "since; a revocation listener that blocks?)",
                kind=SourceErrorKind.SYNC_STALLED,
                since=self._clock() - stalled_for,
            )
        return True

    def _run(self) -> None:
        while not self._stop.wait(self._after / 4):
            self.check()
