"""Replaying records into a :class:`RevocationState`, reusable outside the SDK (streams, ops)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from consumer_sdk._state import RevocationState
from revocation_events import Event, EventCodec, MalformedEventError, SkipReason

__all__ = ["RecordLike", "ReplayStats", "decode_and_apply", "replay"]


class RecordLike(Protocol):
    """The parts of a kafka-python ``ConsumerRecord`` that replay needs."""

    @property
    def value(self) -> bytes | None: ...

    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@dataclass
class ReplayStats:
    """Counts from one replay: applied (changed the state) and unchanged by event type,
    skipped by reason."""

    applied: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    skipped: Counter[SkipReason] = field(default_factory=Counter)

    @property
    def records(self) -> int:
        return self.applied.total() + self.unchanged.total() + self.skipped.total()


def decode_and_apply(
    codec: EventCodec,
    state: RevocationState,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes]],
) -> tuple[Event, bool]:
    """Decode one record and apply it; return the event and whether the state changed.

    Raises :class:`MalformedEventError` for a record to skip.
    """
    event = codec.decode(value, headers)
    return event, state.apply(event)


def replay(records: Iterable[RecordLike], state: RevocationState, codec: EventCodec) -> ReplayStats:
    """Apply every record in order, skipping (and counting) malformed or unauthentic ones."""
    stats = ReplayStats()
    for record in records:
        try:
            event, changed = decode_and_apply(codec, state, record.value, record.headers or ())
        except MalformedEventError as exc:
            stats.skipped[exc.reason] += 1
            continue
        (stats.applied if changed else stats.unchanged)[event.type] += 1
    return stats
