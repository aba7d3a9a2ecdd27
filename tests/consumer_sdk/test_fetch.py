"""poll_ahead and deliver (logic only; against a broker they run in every Kafka test)."""

from __future__ import annotations

from typing import Any

from consumer_sdk._fetch import _PREFETCH_MIN_RECORDS, poll_ahead


class _Consumer:
    def __init__(self, *polls: dict[str, list[int]]) -> None:
        self._polls = list(polls)
        self.timeouts: list[int] = []

    def poll(self, timeout_ms: int) -> dict[str, list[int]]:
        self.timeouts.append(timeout_ms)
        return self._polls.pop(0) if self._polls else {}


def test_a_backlog_puts_the_next_fetch_in_flight_and_delivers_it_after() -> None:
    backlog = list(range(_PREFETCH_MIN_RECORDS))
    consumer = _Consumer({"p0": backlog}, {"p1": [7]})
    got: list[Any] = list(poll_ahead(consumer, 500))
    assert got == [("p0", backlog), ("p1", [7])]
    assert consumer.timeouts == [500, 0]


def test_a_small_batch_is_delivered_with_no_extra_poll() -> None:
    consumer = _Consumer({"p0": [1], "p1": [2]}, {"p2": [3]})
    assert list(poll_ahead(consumer, 500)) == [("p0", [1]), ("p1", [2])]
    assert consumer.timeouts == [500]


def test_an_empty_poll_yields_nothing() -> None:
    consumer = _Consumer()
    assert list(poll_ahead(consumer, 500)) == []
    assert consumer.timeouts == [500]
