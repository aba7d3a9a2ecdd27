"""The revocations the identity service owes the services, as values the store can keep.

A :class:`Revocation` is written in the same SQLite transaction as the state change it
publishes (a transactional outbox, see :mod:`identity_service._outbox`), so a process that dies
after the commit still owes it on restart. Everything a re-publication needs is in the row:
the watermark of a subject revocation is read once, while the change commits, never again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

__all__ = ["Kind", "Pending", "Revocation", "watermark_after"]

Kind = Literal["session", "subject", "version", "block", "unblock", "key"]


def watermark_after(now: float) -> datetime:
    """The ``issued_before`` of a watermark read at ``now``: strictly above every ``iat``
    minted at or before ``now`` (events carry microseconds; ``fromtimestamp`` rounds to the
    nearest, so one more microsecond). A login after it costs a scrypt, far more than 1 µs."""
    return datetime.fromtimestamp(now, UTC) + timedelta(microseconds=1)


@dataclass(frozen=True, slots=True)
class Revocation:
    """One publisher call: ``target`` is the session id, the username or the key id.

    Publishing one twice has no further effect on the services: a session or key revocation
    is idempotent, watermarks and versions merge by maximum, and a block or unblock is
    published as whatever the store holds when it is re-read."""

    kind: Kind
    target: str
    reason: str
    sub: str | None = None
    issued_before: datetime | None = None
    """``subject`` only; None until the store stamps it inside the committing transaction."""
    min_version: int | None = None

    @classmethod
    def session(cls, sid: str, *, sub: str, reason: str) -> Revocation:
        return cls("session", sid, reason, sub=sub)

    @classmethod
    def subject(cls, sub: str, *, reason: str) -> Revocation:
        """Tokens of ``sub`` issued before the commit of the change (the store reads the time
        once it holds the write lock: every session committed earlier minted its ``iat``
        before that)."""
        return cls("subject", sub, reason)

    @classmethod
    def version(cls, sub: str, *, min_version: int, reason: str) -> Revocation:
        return cls("version", sub, reason, min_version=min_version)

    @classmethod
    def block(cls, sub: str, *, blocked: bool) -> Revocation:
        if blocked:
            return cls("block", sub, "admin_block")
        return cls("unblock", sub, "admin_unblock")

    @classmethod
    def key(cls, kid: str, *, reason: str) -> Revocation:
        return cls("key", kid, reason)


@dataclass(frozen=True, slots=True)
class Pending:
    """A committed :class:`Revocation` and its row (``seq`` orders rows by commit)."""

    seq: int
    revocation: Revocation
