"""The SDK's exceptions, grouped by how a caller reacts to them.

Token errors subclass :class:`jwt.InvalidTokenError`, so code that already rejects invalid
tokens rejects revoked ones (and, fail-closed, tokens that cannot be checked) unchanged.
PyJWT's own errors (``ExpiredSignatureError``…) pass through as they are.
"""

from __future__ import annotations

import enum
from datetime import datetime

import jwt

from revocation_events import RevocastError

__all__ = [
    "RevocastTokenError",
    "RevokedBy",
    "SourceError",
    "StateUnavailableError",
    "TokenRevokedError",
]


class RevokedBy(enum.Enum):
    """Which revocation rule refused a token."""

    JTI = "jti"
    SID = "sid"
    SUBJECT_WATERMARK = "subject_watermark"
    BLOCKED = "blocked"
    DELETED = "deleted"
    VERSION = "version"
    KEY = "key"
    GLOBAL = "global"


class RevocastTokenError(jwt.InvalidTokenError):
    """Base of the token errors Revocast adds to PyJWT's."""


class TokenRevokedError(RevocastTokenError):
    """The token is valid by its signature and claims but has been revoked."""

    def __init__(self, rule: RevokedBy, revoked_at: datetime, detail: str = "") -> None:
        super().__init__(f"token revoked ({rule.value})" + (f": {detail}" if detail else ""))
        self.rule = rule
        self.revoked_at = revoked_at
        self.detail = detail


class StateUnavailableError(RevocastTokenError):
    """Fail-closed: the revocation state is not ready, or too stale to trust."""


class SourceError(RevocastError):
    """The data source failed (a Kafka error, translated at the boundary)."""
