"""Pydantic models of the revocation events: one model per kind, discriminated by ``type``.

Every event shares the envelope fields of :class:`BaseEvent`. Times are timezone-aware. The
field ``expires_at`` is the time after which the event can no longer affect any token; ``None``
means "until superseded" (a block lasts until an unblock, a revoked signing key forever).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, model_validator

__all__ = [
    "SCHEMA_VERSION",
    "BaseEvent",
    "Event",
    "EventType",
    "GlobalTokensRevoked",
    "KeyRevoked",
    "SessionRevoked",
    "SubjectBlocked",
    "SubjectDeleted",
    "SubjectTokensRevoked",
    "SubjectUnblocked",
    "SubjectVersionBumped",
    "TokenRevoked",
    "event_adapter",
]

SCHEMA_VERSION: Literal[1] = 1
"""The envelope version this code writes and the newest it understands."""

_Id = Annotated[str, Field(min_length=1, max_length=256)]
_Text = Annotated[str, Field(min_length=1, max_length=256)]


def _now() -> datetime:
    return datetime.now(UTC)


class BaseEvent(BaseModel):
    """Envelope fields common to every event."""

    model_config = ConfigDict(frozen=True, extra="ignore", str_strip_whitespace=False)

    v: Literal[1] = SCHEMA_VERSION
    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    """Unique per event: consumers and compaction drop duplicates by it."""
    issuer: _Text
    """Which service published the event (e.g. ``identity-service``)."""
    occurred_at: AwareDatetime = Field(default_factory=_now)
    reason: Annotated[str, Field(max_length=256)] = ""
    """Free text for audit (``logout``, ``password_change``…). Never put secrets here."""
    expires_at: AwareDatetime | None = None
    key_id: Annotated[str, Field(max_length=128)] | None = None
    """Id of the key that signed this event; must match the record's signature header."""

    def subject(self) -> str | None:
        """The subject whose events must stay ordered, if the event concerns one."""
        return getattr(self, "sub", None)


class TokenRevoked(BaseEvent):
    """One token, by ``jti``, until the token's own ``exp``."""

    type: Literal["token.revoked"] = "token.revoked"
    jti: _Id
    sub: _Id | None = None
    expires_at: AwareDatetime


class SessionRevoked(BaseEvent):
    """Every token carrying ``sid``; relevant for the longest token lifetime."""

    type: Literal["session.revoked"] = "session.revoked"
    sid: _Id
    sub: _Id | None = None
    expires_at: AwareDatetime


class SubjectTokensRevoked(BaseEvent):
    """Logout everywhere / password change: tokens of ``sub`` issued before ``issued_before``."""

    type: Literal["subject.tokens_revoked"] = "subject.tokens_revoked"
    sub: _Id
    issued_before: AwareDatetime
    expires_at: AwareDatetime


class SubjectBlocked(BaseEvent):
    """Every token of ``sub`` is refused until a later unblock (``expires_at`` is ``None``)."""

    type: Literal["subject.blocked"] = "subject.blocked"
    sub: _Id


class SubjectUnblocked(BaseEvent):
    """Lifts an earlier block of ``sub``; remembered until ``expires_at`` to order late blocks."""

    type: Literal["subject.unblocked"] = "subject.unblocked"
    sub: _Id
    expires_at: AwareDatetime


class SubjectDeleted(BaseEvent):
    """The account is gone: every token of ``sub`` is refused until ``expires_at``.

    No token can be issued after deletion, so the rule only has to outlive the tokens issued
    before it.
    """

    type: Literal["subject.deleted"] = "subject.deleted"
    sub: _Id
    expires_at: AwareDatetime


class SubjectVersionBumped(BaseEvent):
    """Permissions changed: tokens of ``sub`` whose version claim is below ``min_version``."""

    type: Literal["subject.version_bumped"] = "subject.version_bumped"
    sub: _Id
    min_version: Annotated[int, Field(ge=0, le=2**53)]
    expires_at: AwareDatetime


class KeyRevoked(BaseEvent):
    """Signing key ``kid`` is compromised: refuse every token it signed, forever.

    Anyone holding a leaked key can mint tokens with any ``iat``/``exp``, so the rule never
    expires by time.
    """

    type: Literal["key.revoked"] = "key.revoked"
    kid: _Id


class GlobalTokensRevoked(BaseEvent):
    """Emergency: every token issued before ``issued_before``, whoever it belongs to."""

    type: Literal["global.tokens_revoked"] = "global.tokens_revoked"
    issued_before: AwareDatetime
    expires_at: AwareDatetime

    @model_validator(mode="after")
    def _watermark_not_in_future(self) -> GlobalTokensRevoked:
        # A global watermark far in the future would lock everyone out until it passes.
        if self.issued_before > self.occurred_at + timedelta(minutes=5):
            raise ValueError("issued_before may not be more than 5 minutes after occurred_at")
        return self


Event = Annotated[
    TokenRevoked
    | SessionRevoked
    | SubjectTokensRevoked
    | SubjectBlocked
    | SubjectUnblocked
    | SubjectDeleted
    | SubjectVersionBumped
    | KeyRevoked
    | GlobalTokensRevoked,
    Field(discriminator="type"),
]
"""Any revocation event."""

EventType = Literal[
    "token.revoked",
    "session.revoked",
    "subject.tokens_revoked",
    "subject.blocked",
    "subject.unblocked",
    "subject.deleted",
    "subject.version_bumped",
    "key.revoked",
    "global.tokens_revoked",
]

event_adapter: TypeAdapter[Event] = TypeAdapter(Event)
"""Validates JSON bytes or Python objects into the right event model."""
