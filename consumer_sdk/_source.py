"""Interfaces between a data source and the rest of the SDK.

A *data source* (Kafka, or :class:`consumer_sdk.testing.InMemorySource`) owns its I/O and
pushes what it reads into an *update sink*; the sink decodes and authenticates records, applies
events to the store (:class:`RevocationState`), updates the status provider, metrics and
listeners. Sources never touch the store directly, so every source behaves the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from consumer_sdk._status import DataSourceState, SourceErrorKind
from revocation_events import Event

if TYPE_CHECKING:
    from consumer_sdk._snapshot import Chunk

__all__ = ["DataSource", "Headers", "UpdateSink"]

Headers = Sequence[tuple[str, bytes]]


class UpdateSink(Protocol):
    """What a data source may call, from its own threads (:meth:`status` may also come from
    its stall watch, :class:`consumer_sdk._stall.StallWatch`)."""

    def record(
        self, value: bytes | None, headers: Headers, *, timestamp_ms: int | None = None
    ) -> None:
        """A raw record: decode, authenticate and apply it, or count and log why it was skipped.
        Never raises for bad input."""

    def event(self, event: Event) -> None:
        """An already decoded and authenticated event."""

    def restore(self, chunks: list[Chunk]) -> dict[str, int]:
        """Load the rules of verified snapshot chunks in bulk (see
        :mod:`consumer_sdk._snapshot`); return how many were loaded per kind. Revocation
        listeners are not called for them."""

    def status(
        self,
        state: DataSourceState,
        error: str | None = None,
        *,
        kind: SourceErrorKind | None = None,
        since: float | None = None,
    ) -> None:
        """Report VALID once caught up with the topic as it was at start; INTERRUPTED (with
        the error) on a failure, ``since`` when it began if that was earlier than now.
        ``kind`` names the error for readers that must not see its text (the health
        endpoint); an error without one counts as SOURCE_ERROR. Sources never report OFF:
        closing the SDK does."""

    def tick(self) -> None:
        """Periodic maintenance (expiry, gauges); call at least every few seconds."""


class DataSource(Protocol):
    """Feeds the sink. ``start`` must not block; ``close`` stops within ``timeout``."""

    def start(self, sink: UpdateSink) -> None: ...

    def close(self, timeout: float) -> None: ...

    def stats(self) -> dict[str, Any]:
        """Source-specific figures (partitions, offsets, lag)."""
        ...

    def after_fork(self) -> DataSource:
        """In a forked child process, the source to start there (threads and sockets of the
        parent are unusable in the child)."""
        ...
