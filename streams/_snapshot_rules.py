"""The rules the snapshotter (:mod:`streams._snapshot`) keeps per log partition: what
applying one log partition's events gives, in the terms of the snapshot format
(:mod:`consumer_sdk._snapshot`).

:class:`PartitionRules` merge as ``RevocationState`` does but keyed by strings (an SDK's jti
fingerprints are per-process hashes). Memory: every live rule with its strings, ~150 bytes
per jti.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from consumer_sdk._settings import MAX_LEEWAY
from consumer_sdk._snapshot import DEFAULT_CHUNK_BYTES, Chunk, encode_chunks, event_of
from consumer_sdk._state import RevocationState
from revocation_events import Event, TokenRevoked

__all__ = ["CLOCK_SKEW", "PartitionRules"]

_U32_MAX = 2**32 - 1
CLOCK_SKEW = 60.0
"""Seconds the writer's clock may be ahead of a reader's: rules are kept this much longer
than ``MAX_LEEWAY`` needs, so a reader with a slower clock finds every rule it enforces."""
_KEEP = MAX_LEEWAY + CLOCK_SKEW


class PartitionRules:
    """What applying one log partition's events gives, in the snapshot's terms.

    The SDK's store keys jtis by a per-process hash, so jtis are kept here with their
    strings, merged as the store's fingerprint table merges them (the latest deadline, the
    earliest time). Every other rule is keyed by strings in the store too, so those go to a
    :class:`RevocationState` of the writer's own: snapshots hold exactly what the SDK's merge
    gives, whatever it is. Its grace is ``MAX_LEEWAY`` plus :data:`CLOCK_SKEW`, so no rule is
    dropped while any SDK may still use it, even with a clock somewhat behind the writer's;
    readers filter by their own leeway and clock when they load.
    """

    def __init__(self, max_token_lifetime: float, clock: Callable[[], float]) -> None:
        self.lifetime = max_token_lifetime
        self._clock = clock
        self.jti: dict[str, int] = {}  # jti -> deadline << 32 | time
        self.state = RevocationState(
            clock=clock, max_token_lifetime=max_token_lifetime, grace=_KEEP
        )

    def __len__(self) -> int:
        sizes = self.state.size_by_kind()
        return len(self.jti) + sum(n for kind, n in sizes.items() if kind != "jti")

    def apply(self, event: Event) -> bool:
        """Merge one event; return whether anything changed."""
        if isinstance(event, TokenRevoked):
            return self.revoke_jti(
                event.jti, event.expires_at.timestamp(), event.occurred_at.timestamp()
            )
        return self.state.apply(event)

    def revoke_jti(self, jti: str, expires_at: float, at: float) -> bool:
        """The effect of a ``TokenRevoked`` event (also used to fill snapshots directly)."""
        deadline = _ceil_u32(expires_at)
        if deadline + _KEEP <= self._clock():
            return False
        revoked = min(max(int(at), 0), _U32_MAX)
        old = self.jti.get(jti)
        if old is not None:
            deadline = max(deadline, old >> 32)
            revoked = min(revoked, old & _U32_MAX)
        new = deadline << 32 | revoked
        self.jti[jti] = new
        return new != old

    def prune(self) -> int:
        """Drop rules that can no longer matter to any reader; return how many."""
        dead = self._clock() - _KEEP
        gone = [j for j, packed in self.jti.items() if packed >> 32 <= dead]
        for j in gone:
            del self.jti[j]
        return len(gone) + self.state.expire()

    def chunks(self, max_bytes: int = DEFAULT_CHUNK_BYTES) -> list[bytes]:
        """The encoded chunks, each at most ``max_bytes``."""
        # Sorting the packed values sorts by deadline, as the format requires.
        jtis = [
            (jti, packed >> 32, packed & _U32_MAX)
            for jti, packed in sorted(self.jti.items(), key=operator.itemgetter(1))
        ]
        return encode_chunks(jtis, [*self._rows()], max_bytes)

    def _rows(self) -> Iterator[tuple[str, list[Any]]]:
        _, sids, subjects, kids, glob = self.state.snapshot()
        for sid, (at, until) in sids:
            yield "sid", [sid, at, until]
        for sub, (watermark, block, deleted, version) in subjects:
            if watermark is not None:
                yield "sub_wm", [sub, *watermark]
            if block is not None:
                (at, event_id, _), blocked, until = block
                yield "sub_block", [sub, at, event_id, blocked, None if blocked else until]
            if deleted is not None:
                yield "sub_del", [sub, *deleted]
            if version is not None:
                yield "sub_ver", [sub, *version]
        for kid, at in kids:
            yield "kid", [kid, at]
        if glob is not None:
            yield "global", [*glob]

    @classmethod
    def from_chunks(
        cls, chunks: Iterable[Chunk], max_token_lifetime: float, clock: Callable[[], float]
    ) -> PartitionRules:
        """The rules a snapshot holds (the writer resuming from its own snapshot)."""
        rules = cls(max_token_lifetime, clock)
        for chunk in chunks:
            for jti, deadline, at in zip(
                chunk.jti, chunk.jti_deadline, chunk.jti_time, strict=True
            ):
                rules.jti[jti] = deadline << 32 | at
            for kind, rows in chunk.rows.items():
                for row in rows:
                    rules.state.apply(event_of(kind, row))
        return rules


def _ceil_u32(seconds: float) -> int:
    return min(max(math.ceil(seconds), 0), _U32_MAX)
