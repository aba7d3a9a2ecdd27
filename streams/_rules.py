"""Which rule an event sets, and which of two events wins a rule. Pure: no Kafka, no clock.

Every event sets exactly one rule key. A rule keeps one winning event, chosen by a total
order (:func:`rank`), so the winner depends only on the set of events seen, never on their
arrival order: replays, duplicates and reprocessing after a crash converge on the same state.

The same order is the consumer SDK's merge (``consumer_sdk._state``): an SDK keeps, per rule,
what the highest-ranked event says, so applying only the winner gives the same
``RevocationState.snapshot()`` as applying every event of the rule, in any order
(``tests/streams/test_rules.py`` checks it with Hypothesis). That is what makes the state
topic (every rule's winner, each in a record keyed by its event) equal to a log replay. Per
kind, with *E* = ``expires_at``, *a* = ``occurred_at`` and *L* the SDK's
``max_token_lifetime``:

``jti``, ``sid``, ``sub-del``
    One predicate (that token, that session, that subject), so only the deadline varies:
    the winner is the longest revocation (greatest *E*), then the earliest *a* (the time the
    SDK reports), then the event id. The SDK's deadline is the winner's, which is the
    greatest *E* of all events: never shorter than anything the log says.
``sub-wm``, ``global``
    Nested predicates ("issued before *T*"): the greatest ``issued_before`` *T* wins, then
    the greatest *E*, the earliest *a*, the id. The SDK keeps the winner's deadline
    ``max(E, T + L)`` alone, not the greatest deadline of all events. A losing event *X*
    (``T_x <= T``) only covers tokens with ``iat < T_x``; one still valid after ``T + L``
    would have lived longer than *L*, which the SDK rules out anyway (it replays only *L*
    back). So no valid token loses a revocation.
``sub-ver``
    Nested too ("version below *v*"): the greatest ``min_version`` wins, then the greatest
    *E*, the earliest *a*, the id; the SDK keeps the winner's deadline ``max(E, a + L)``. A
    losing bump only covers versions below the winner's, and every such token was issued
    before the winning bump (after it, the issuer issues that version or newer; the rule
    rests on this), so it expires by ``a + L``.
``sub-block``
    Block and unblock, last writer wins by (*a*, id), **whatever the expiry**: an unblock
    past its *E* still beats an older block (the SDK orders them the same way; the rule then
    simply has nothing left to publish once the sweep removes the dead unblock).
``kid``
    Never expires: the earliest *a* wins (the key has been compromised since the first
    report), then the id.

Exactness has preconditions, all met by events from the ``producer`` package with the SDK's
``max_token_lifetime`` not above the producer's: every event of one ``jti`` carries the same
*E* (it is the token's ``exp``; otherwise the SDK's deadline still agrees, only the reported
time may differ), and for ``sid``, ``sub-del``, ``sub-ver`` and unblocks *E* is at least
``a + L`` (otherwise the SDK's floor ``a + L`` can order two events differently from *E*;
the SDK's deadline is then still at least every event's *E*).
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
    """Sort key within one rule: the greater event wins (see the module docstring).

    * watermarks (``sub-wm``, ``global``): the later ``issued_before`` covers more tokens;
    * ``sub-ver``: the higher ``min_version``;
    * ``jti``, ``sid``, ``sub-del``: the later ``expires_at`` (the longer revocation);
    * ``sub-block`` (block and unblock): the later ``occurred_at`` (last writer wins), then
      the event id, then a block over an unblock (fail safe on a full tie, as the SDK);
    * ``kid``: the earlier ``occurred_at`` (the rule never expires), then the event id.

    Other ties fall back to the later ``expires_at``, the *earlier* ``occurred_at`` and
    finally the event id.
    """
    occurred = event.occurred_at.timestamp()
    match event:
        case SubjectBlocked() | SubjectUnblocked():
            return (occurred, str(event.id), float(isinstance(event, SubjectBlocked)))
        case KeyRevoked():
            return (-occurred, str(event.id))
        case SubjectTokensRevoked() | GlobalTokensRevoked():
            primary: tuple[float, ...] = (event.issued_before.timestamp(),)
        case SubjectVersionBumped():
            primary = (float(event.min_version),)
        case _:
            primary = ()
    return (*primary, _ts(event.expires_at), -occurred, str(event.id))


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
        if isinstance(self.event, SubjectBlocked | KeyRevoked):
            # Never by time, as in the SDK, even when the event carries an ``expires_at``
            # (the wire format and the codec allow one on every event).
            return None
        moment = self.event.expires_at
        return None if moment is None else moment.timestamp()

    def expired(self, now: float) -> bool:
        expires = self.expires_at
        return expires is not None and expires <= now

    def beats(self, other: Rule) -> bool:
        return rank(self.event) > rank(other.event)


class Outcome(enum.Enum):
    """What merging one event into a rule did (:func:`merge`); counted by the worker."""

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
    """The result of :func:`merge`: what happened, and the rule's winner afterwards."""

    outcome: Outcome
    winner: Rule | None
    """The live winner after the merge (``None`` when there is none)."""


def merge(existing: Rule | None, new: Rule, now: float) -> Merge:
    """Decide what ``new`` does to a rule whose current winner is ``existing``.

    ``existing`` past its ``expires_at`` counts as absent, and ``new`` past its own is
    ignored (``EXPIRED``) -- except for ``sub-block``, which is ordered by time alone: an
    expired unblock still replaces an older block (the caller's sweep then removes it), as
    it does in the SDK. Both must share a rule key.
    """
    if existing is not None and existing.key != new.key:
        raise ValueError(f"rule keys differ: {existing.key!r} != {new.key!r}")
    if isinstance(new.event, SubjectBlocked | SubjectUnblocked):
        live = existing
    else:
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
