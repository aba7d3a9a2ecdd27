"""Test doubles shipped as public API: drive the SDK from your own tests, without Kafka.

    src = InMemorySource()
    rc = Revocast(settings, source=src, clock=fake_clock)
    src.set_ready()
    src.publish(TokenRevoked(issuer="idp", jti="abc", expires_at=...))
    with pytest.raises(TokenRevokedError):
        rc.verify(token)

Everything runs synchronously on the calling thread: when ``publish`` returns, the event is
applied (or the raw record skipped and counted).
"""

from __future__ import annotations

from typing import Any

from consumer_sdk._source import DataSource, Headers, UpdateSink
from consumer_sdk._status import DataSourceState, SourceErrorKind
from revocation_events import BaseEvent, Event

__all__ = ["InMemorySource"]


class InMemorySource:
    """A data source you push events into. Events published before the SDK starts it are
    delivered on start, in order."""

    def __init__(self) -> None:
        self._sink: UpdateSink | None = None
        self._pending: list[tuple[str, Any, Any]] = []
        self.closed = False
        self.published = 0

    def start(self, sink: UpdateSink) -> None:
        self._sink = sink
        self.closed = False
        pending, self._pending = self._pending, []
        for kind, a, b in pending:
            self._deliver(kind, a, b)

    def close(self, timeout: float) -> None:
        self.closed = True

    def stats(self) -> dict[str, Any]:
        return {"published": self.published}

    def after_fork(self) -> DataSource:
        return self

    def publish(self, event: BaseEvent) -> None:
        """Deliver an event as if read from the topic and authenticated."""
        self._deliver("event", event, None)

    def publish_raw(self, value: bytes | None, headers: Headers = ()) -> None:
        """Deliver a raw record value; it goes through decoding and signature checks."""
        self._deliver("raw", value, tuple(headers))

    def set_ready(self) -> None:
        """Report that the replay is complete (status VALID)."""
        self._deliver("status", DataSourceState.VALID, None)

    def interrupt(
        self, error: str = "interrupted", kind: SourceErrorKind = SourceErrorKind.SOURCE_ERROR
    ) -> None:
        """Report a lost connection: status INTERRUPTED with ``error`` of ``kind`` (to test
        how an application handles, say, ``KAFKA_UNAUTHORIZED``)."""
        self._deliver("status", DataSourceState.INTERRUPTED, (error, kind))

    def tick(self) -> None:
        """Run the periodic maintenance (expiry, gauges) now."""
        self._deliver("tick", None, None)

    def _deliver(self, kind: str, a: Any, b: Any) -> None:
        sink = self._sink
        if sink is None:
            self._pending.append((kind, a, b))
            return
        if kind == "event":
            self.published += 1
            event: Event = a
            sink.event(event)
        elif kind == "raw":
            self.published += 1
            sink.record(a, b)
        elif kind == "status":
            error, error_kind = b if isinstance(b, tuple) else (b, None)
            sink.status(a, error, kind=error_kind)
        else:
            sink.tick()
