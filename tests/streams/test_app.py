"""The worker's assignment handling (streams.app), without a broker: faust's consumer and the
Kafka reads it makes are replaced."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import pytest
from faust.types import TP

import streams.app
from streams import StreamsError, StreamsSettings
from streams._seed import StateRecord
from streams._topics import Resume


class _Consumer:
    """What on_rebalance_complete uses of faust's consumer: log partition 0 is assigned."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.committed: list[dict[TP, int]] = []

    def assignment(self) -> set[TP]:
        return {TP(self.topic, 0)}

    async def _commit(self, offsets: dict[TP, int]) -> None:
        self.committed.append(dict(offsets))

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        pass


def test_a_state_read_that_fails_once_is_retried_before_the_partitions_are_held(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A blip of the cluster while a partition is assigned held it until the next rebalance,
    which a lone worker never gets: nothing of it was processed until a restart."""
    settings, app, consumer = _app()
    reads: list[list[int]] = []

    def resume_offsets(_: StreamsSettings, mine: list[int]) -> dict[int, Resume]:
        reads.append(mine)
        if len(reads) == 1:
            raise StreamsError("cannot read where to resume the log: NoBrokersAvailable")
        return {0: Resume(start=7, marker=6)}

    def read_state(_: StreamsSettings, partitions: Iterable[int]) -> dict[int, list[StateRecord]]:
        return {p: [] for p in partitions}

    monkeypatch.setattr(streams.app, "resume_offsets", resume_offsets)
    monkeypatch.setattr(streams.app, "read_state", read_state)
    monkeypatch.setattr(streams.app, "_READ_RETRY_SECONDS", 0.0, raising=False)
    with caplog.at_level(logging.WARNING, "streams"):
        asyncio.run(_rebalance_complete(app))
    assert len(reads) == 2
    assert consumer.committed == [{TP(settings.log_topic, 0): 7}]
    assert "held" not in caplog.text


def test_a_state_read_that_keeps_failing_holds_the_partitions(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _, app, consumer = _app()
    reads: list[list[int]] = []

    def resume_offsets(_: StreamsSettings, mine: list[int]) -> dict[int, Resume]:
        reads.append(mine)
        raise StreamsError("cannot read where to resume the log: NoBrokersAvailable")

    monkeypatch.setattr(streams.app, "resume_offsets", resume_offsets)
    monkeypatch.setattr(streams.app, "_READ_RETRY_SECONDS", 0.0)
    with caplog.at_level(logging.WARNING, "streams"):
        asyncio.run(_rebalance_complete(app))
    assert len(reads) == streams.app._READ_ATTEMPTS
    assert consumer.committed == []
    assert "log partitions [0] are held" in caplog.text


def _app() -> tuple[StreamsSettings, Any, _Consumer]:
    """A worker app for one log partition, with faust's consumer replaced."""
    settings = StreamsSettings(allow_unsigned=True)
    app = streams.app.create_app(settings, partitions=1)
    consumer = _Consumer(settings.log_topic)
    app.consumer = consumer
    return settings, app, consumer


async def _rebalance_complete(app: Any) -> None:
    await app.on_rebalance_complete.send()
