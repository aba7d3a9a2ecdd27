"""Which rule an event sets, and which of two events wins a rule. Pure: no Kafka, no clock.

Every event sets exactly one rule key. A rule keeps one winning event, chosen by a total
order (:func:`rank`), so the winner depends only on the set of events seen, never on their
arrival order: replays, duplicates and reprocessing after a crash converge on the same state.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from revocation_events import (
    Event,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)

__all__ = ["Merge", "Outcome", "Rule", "merge", "rank", "rule_key"]


def rule_key(event: Event) -> str:
    """The state key an event sets: ``jti:…``, ``sid:…``, ``sub-wm:…``, ``sub-block:…``,
    ``sub-del:…``, ``sub-ver:…``, ``kid:…`` or ``global``."""
    match event:
        case TokenRevoked():
            return f"jti:{event.jti}"
        case SessionRevoked():
            return f"sid:{event.sid}"
        case SubjectTokensRevoked():
            return f"sub-wm:{event.sub}"
        case SubjectBlocked() | SubjectUnblocked():
            return f"sub-block:{event.sub}"
        case SubjectDeleted():
            return f"sub-del:{event.sub}"
        case SubjectVersionBumped():
            return f"sub-ver:{event.sub}"
        case KeyRevoked():
            return f"kid:{event.kid}"
        case GlobalTokensRevoked():
            return "global"
    raise TypeError(f"no rule for {type(event).__name__}")  # pragma: no cover


_FOREVER = float("inf")


def _ts(moment: datetime | None) -> float:
    return _FOREVER if moment is None else moment.timestamp()


def rank(event: Event) -> tuple[float | str, ...]:
    """Sort key within one rule: the greater event wins.

    * watermarks (``sub-wm``, ``global``): the later ``issued_before`` covers more tokens;
    * ``sub-ver``: the higher ``min_version``;
    * ``jti``, ``sid``, ``sub-del``: the later ``expires_at`` (the longer revocation);
    * ``sub-block`` (block and unblock): the later ``occurred_at`` (last writer wins);
    * ``kid``: any (the rule never expires).

    Ties fall back to ``expires_at``, ``occurred_at`` and finally the event id.
    """
    match event:
        case SubjectTokensRevoked() | GlobalTokensRevoked():
            primary: tuple[float, ...] = (event.issued_before.timestamp(),)
        case SubjectVersionBumped():
            primary = (float(event.min_version),)
        case _:
            primary = ()
    return (*primary, _ts(event.expires_at), event.occurred_at.timestamp(), str(event.id))


def _block_rank(event: Event) -> tuple[float | str, ...]:
    return (event.occurred_at.timestamp(), str(event.id))


@dataclass(frozen=True, slots=True)
class Rule:
    """One winning event: the parsed event plus the exact record it came in."""

    event: Event
    value: bytes
    """The original record value, byte for byte (the signed payload)."""
    signature: bytes | None
    """The original ``revocast-sig`` header, if any."""

    @property
    def key(self) -> str:
        return rule_key(self.event)

    @property
    def expires_at(self) -> float | None:
        """Epoch seconds after which the rule no longer matters; ``None`` for never."""
        moment = self.event.expires_at
        return None if moment is None else moment.timestamp()

    def expired(self, now: float) -> bool:
        expires = self.expires_at
        return expires is not None and expires <= now

    def beats(self, other: Rule) -> bool:
        order = _block_rank if isinstance(self.event, SubjectBlocked | SubjectUnblocked) else rank
        return order(self.event) > order(other.event)


class Outcome(enum.Enum):
    REPLACED = "replaced"
    """The new event is the rule's winner now (or the first one)."""
    DUPLICATE = "duplicate"
    """The new event is the current winner (same id): nothing changed."""
    SUPERSEDED = "superseded"
    """The current winner beats the new event."""
    EXPIRED = "expired"
    """The new event can no longer affect any token."""


@dataclass(frozen=True, slots=True)
class Merge:
    outcome: Outcome
    winner: Rule | None
    """The live winner after the merge (``None`` when there is none)."""


def merge(existing: Rule | None, new: Rule, now: float) -> Merge:
    """Decide what ``new`` does to a rule whose current winner is ``existing``.

    ``existing`` past its ``expires_at`` counts as absent. Both must share a rule key.
    """
    if existing is not None and existing.key != new.key:
        raise ValueError(f"rule keys differ: {existing.key!r} != {new.key!r}")
    live = None if existing is None or existing.expired(now) else existing
    if new.expired(now):
        return Merge(Outcome.EXPIRED, live)
    if live is None:
        return Merge(Outcome.REPLACED, new)
    if live.event.id == new.event.id:
        return Merge(Outcome.DUPLICATE, live)
    if new.beats(live):
        return Merge(Outcome.REPLACED, new)
    return Merge(Outcome.SUPERSEDED, live)
