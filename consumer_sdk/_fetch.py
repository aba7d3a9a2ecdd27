"""Polling and delivering fetched records: shared by the log replay/tail
(:mod:`consumer_sdk._kafka_source`) and the state-topic load (:mod:`consumer_sdk._state_topic`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from consumer_sdk._source import UpdateSink

__all__ = ["deliver", "poll_ahead"]

# A poll returning this many records means a backlog (replay, or a burst): fetch ahead.
# Fewer (tailing: usually one revocation) are delivered at once, with no extra poll first.
_PREFETCH_MIN_RECORDS = 64


def poll_ahead(consumer: Any, timeout_ms: int) -> Iterator[tuple[Any, list[Any]]]:
    """``(partition, records)`` of one ``poll()``, and after a backlog also of the next.

    Catching up, kafka-python sends the next fetch only from inside ``poll()``, and not at all
    after a poll that had to wait, so the broker would idle while a batch is applied. A
    zero-timeout poll puts a fetch in flight (and returns whatever else is already buffered,
    delivered after the first batch).
    """
    batch = consumer.poll(timeout_ms=timeout_ms)
    ahead: dict[Any, Any] = {}
    if batch and sum(map(len, batch.values())) >= _PREFETCH_MIN_RECORDS:
        ahead = consumer.poll(timeout_ms=0)
    yield from batch.items()
    yield from ahead.items()


def deliver(sink: UpdateSink, records: Sequence[Any]) -> None:
    """Hand fetched records to ``sink`` in order: in one call when it takes a batch (the SDK's
    sink does, with its per-record lookups hoisted), else one ``record()`` each."""
    batch = getattr(sink, "records", None)
    if batch is not None:
        batch(records)
    else:
        for record in records:
            sink.record(record.value, record.headers or (), timestamp_ms=record.timestamp)
