"""Memory: bytes per live entry of the revocation state, measured with ``tracemalloc``.

Everything allocated while the state is populated and still alive afterwards counts,
including the subject strings a subject rule keeps as its key; the event objects themselves
are garbage by then and do not.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bench._common import fill
from consumer_sdk import RevocationState
from revocation_events import BaseEvent, SubjectBlocked, SubjectTokensRevoked, SubjectVersionBumped

__all__ = ["SUBJECT_RULES", "bytes_per_entry", "jti_bytes", "subject_bytes"]


def bytes_per_entry(populate: Callable[[RevocationState], None], n: int) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        state = RevocationState(clock=time.time, max_token_lifetime=3600)
        populate(state)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    live = sum(state.size_by_kind().values())
    if live != n:
        raise RuntimeError(f"expected {n:,} live entries, the state holds {live:,}")
    return used / n


def jti_bytes(n: int) -> float:
    """Bytes per revoked jti with ``n`` of them in the state."""
    return bytes_per_entry(lambda state: fill(state, n), n)


def _watermark(i: int, now: datetime) -> BaseEvent:
    return SubjectTokensRevoked.model_construct(
        issuer="bench",
        sub=f"user-{i:09d}",
        issued_before=now,
        expires_at=now + timedelta(hours=1),
        occurred_at=now,
        id=uuid.UUID(int=i),
    )


def _block(i: int, now: datetime) -> BaseEvent:
    return SubjectBlocked.model_construct(
        issuer="bench", sub=f"user-{i:09d}", occurred_at=now, id=uuid.UUID(int=i)
    )


def _version(i: int, now: datetime) -> BaseEvent:
    return SubjectVersionBumped.model_construct(
        issuer="bench",
        sub=f"user-{i:09d}",
        min_version=2,
        expires_at=now + timedelta(hours=1),
        occurred_at=now,
        id=uuid.UUID(int=i),
    )


SUBJECT_RULES: dict[str, Callable[[int, datetime], BaseEvent]] = {
    "subject watermark": _watermark,
    "blocked subject": _block,
    "subject min version": _version,
}


def subject_bytes(rule: str, n: int) -> float:
    """Bytes per subject rule with ``n`` subjects carrying one rule each."""
    make = SUBJECT_RULES[rule]
    now = datetime.now(UTC)

    def populate(state: RevocationState) -> None:
        for i in range(n):
            state.apply(make(i, now))  # type: ignore[arg-type]

    return bytes_per_entry(populate, n)
