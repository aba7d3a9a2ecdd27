"""Tumbling-window counts of revocations by kind and reason, per log partition.

A window is ``[start, start + size)`` on the record timestamp (the broker's append time or the
producer's create time). Counts live in a compacted table keyed ``<partition>|<start>``; the
tick for a partition closes windows whose end plus grace has passed: it publishes one stats
record and deletes the key. A record for an already-closed window reopens it and the window
is published again later with just the late counts, so consumers sum the records of a
``(window, partition)``.

Counts are exactly once while a window is open: it remembers the highest log offset it
counted and ignores a redelivered record at or below it. A record redelivered after its
window was published (a crash with uncommitted offsets older than the grace period) is
counted again: stats are at least once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime

__all__ = ["WindowCounts", "window_key", "window_start"]


def window_start(timestamp: float, size: int) -> int:
    return int(timestamp // size) * size


def window_key(partition: int, start: int) -> bytes:
    return f"{partition}|{start}".encode()


@dataclass(slots=True)
class WindowCounts:
    start: int
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    alerted: list[str] = field(default_factory=list)
    """Kinds already alerted in this window (one alert per kind and window)."""
    offset: int = -1
    """The highest log offset counted here. Records of a partition are counted in offset
    order, so a record at or below it was counted already (a redelivery)."""

    def add(self, kind: str, reason: str) -> int:
        """Count one event; return the window's new total for ``kind``."""
        by_reason = self.counts.setdefault(kind, {})
        by_reason[reason] = by_reason.get(reason, 0) + 1
        return sum(by_reason.values())

    def encode(self) -> bytes:
        doc = {
            "start": self.start,
            "counts": self.counts,
            "alerted": self.alerted,
            "offset": self.offset,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> WindowCounts:
        doc = json.loads(data)
        return cls(
            start=int(doc["start"]),
            counts=doc["counts"],
            alerted=list(doc["alerted"]),
            offset=int(doc.get("offset", -1)),
        )

    def stats_value(self, *, partition: int, size: int) -> bytes:
        doc = {
            "window_start": _iso(self.start),
            "window_end": _iso(self.start + size),
            "partition": partition,
            "total": sum(n for by_reason in self.counts.values() for n in by_reason.values()),
            "counts": self.counts,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()
