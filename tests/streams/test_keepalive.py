"""The worker counts as fetching for aiokafka while it seeds (streams._keepalive)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.consumer.subscription_state import (  # type: ignore[import-untyped]
    SubscriptionState,
)

from streams._keepalive import polling


class _ConsumerThread:
    """faust's aiokafka consumer thread: runs what it is given on its own event loop."""

    def __init__(self, subscription: Any) -> None:
        self._consumer = SimpleNamespace(_subscription=subscription)
        self.threads: list[str] = []

    def _ensure_consumer(self) -> Any:
        return self._consumer

    async def call_thread(self, fun: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
        def run() -> None:
            self.threads.append(threading.current_thread().name)
            asyncio.run(fun(*args))

        thread = threading.Thread(target=run, name="consumer-thread")
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)


def _app(thread: Any) -> Any:
    return SimpleNamespace(consumer=SimpleNamespace(_thread=thread))


def test_a_seed_counts_as_a_fetch_until_it_ends_even_when_it_fails() -> None:
    """aiokafka leaves the group once its subscription has been idle (no fetch in progress)
    for max_poll_interval_ms; a seed in progress keeps it at zero, in the consumer's
    thread."""

    async def run() -> tuple[float, list[float], float, list[str]]:
        subscription = SubscriptionState()
        thread = _ConsumerThread(subscription)
        before = subscription.fetcher_idle_time  # idle since it was made
        inside: list[float] = []

        async def failing_seed() -> None:
            async with polling(_app(thread)):
                inside.append(subscription.fetcher_idle_time)
                raise RuntimeError("the seed failed")

        with pytest.raises(RuntimeError):
            await failing_seed()
        return before, inside, subscription.fetcher_idle_time, thread.threads

    before, inside, after, threads = asyncio.run(run())
    assert before > 0
    assert inside == [0]
    assert after > 0  # idle again: a worker stuck after its seed still leaves the group
    assert threads == ["consumer-thread", "consumer-thread"]


def test_another_faust_or_aiokafka_is_reported_and_the_seed_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = []

    async def run() -> None:
        async with polling(_app(SimpleNamespace())):
            ran.append(True)

    with caplog.at_level(logging.WARNING, logger="streams"):
        asyncio.run(run())
    assert ran == [True]
    assert "starts over at every assignment" in caplog.text
