"""Where mapped events go: the producer's ``Publisher`` in production, a list in tests."""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from revocation_events import BaseEvent

__all__ = ["EventSink", "RecordingSink"]


@runtime_checkable
class EventSink(Protocol):
    """Publishes one event and returns only once it is durable.

    ``producer.Publisher`` satisfies this: ``publish`` returns after the Kafka broker
    acknowledged the record, or, in outbox mode, with ``queued=True`` once the event is stored
    durably on local disk (it is then sent as soon as Kafka is reachable). The receiver treats
    both as delivered: it answers 202 / acknowledges the SET only after ``publish`` returned.
    Any exception means "not delivered": the transmitter is told to try again.
    """

    def publish(self, event: BaseEvent) -> object: ...


class RecordingSink:
    """An in-memory :class:`EventSink` for tests: keeps every event, can be told to fail."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[BaseEvent] = []
        self.fail_with: Exception | None = None
        """When set, :meth:`publish` raises it instead of recording."""

    @property
    def events(self) -> list[BaseEvent]:
        with self._lock:
            return list(self._events)

    def publish(self, event: BaseEvent) -> object:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self._events.append(event)
        return None
