"""Keeping the worker in its consumer group while it seeds its rules table.

aiokafka takes a consumer that has asked for no records for ``max_poll_interval_ms`` (faust's
``broker_max_poll_interval``) for a stuck one, and leaves the group. faust asks for none while
its ``on_rebalance_complete`` handlers run, nor while its agent's buffer is full or its
producer's holds more than a few sends. A seed does all three: the worker reads the state
partitions in that handler, and its agent merges them before anything else, each merged rule
a changelog write. A seed longer than the interval therefore lost the partitions it was seeding,
and started over at the next assignment, from the start of the state topic: it never ended.

While a seed runs, :func:`polling` tells aiokafka that the consumer is fetching, as it does
for one of its own fetches. A seed is not stuck: its reads fail after a wait without progress
(:func:`streams._seed.read_state`), and the merge is a finite loop that yields to the event
loop. Heartbeats go on meanwhile (faust runs the aiokafka consumer in a thread of its own), so
a worker that dies still leaves the group after its session timeout, and a rebalance started
by another member still revokes the partitions mid-seed (the processor then stops seeding
them). The merged entries stay; the partition's record of the last marker, which says the
table is in step with the state topic, is written only by a marker after the whole seed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from typing import Any

__all__ = ["polling"]

logger = logging.getLogger("streams")

_EXIT_TIMEOUT = 10.0


def _fetch_context(app: Any) -> AbstractContextManager[None]:
    # faust reads aiokafka's subscription state the same way (its driver's ``_fetch_records``).
    subscription = app.consumer._thread._ensure_consumer()._subscription
    context: AbstractContextManager[None] = subscription.fetch_context()
    return context


async def _enter(context: AbstractContextManager[None]) -> None:
    context.__enter__()


async def _exit(context: AbstractContextManager[None]) -> None:
    context.__exit__(None, None, None)


@asynccontextmanager
async def polling(app: Any) -> AsyncIterator[None]:
    """Count as one of the consumer's fetches for aiokafka's ``max_poll_interval_ms`` check
    (in faust's consumer thread, where aiokafka's own fetches count)."""
    try:
        context = _fetch_context(app)
    except AttributeError as exc:  # another faust or aiokafka than the ones known
        logger.warning(
            "cannot keep the worker in its consumer group while it seeds its rules table (%s): "
            "a seed longer than max_poll_interval_ms starts over at every assignment",
            exc,
        )
        yield
        return
    thread = app.consumer._thread
    await thread.call_thread(_enter, context)
    try:
        yield
    finally:
        try:
            # Bounded: the consumer thread may be stopping with the worker.
            await asyncio.wait_for(thread.call_thread(_exit, context), _EXIT_TIMEOUT)
        except TimeoutError:
            logger.warning("the consumer thread did not answer within %.0fs", _EXIT_TIMEOUT)
