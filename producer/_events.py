"""Turning publisher arguments into validated events.

Everything here runs before a byte is sent: a bad argument raises
:class:`~producer.InvalidRevocationError` and nothing reaches the outbox or Kafka.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from producer._errors import InvalidRevocationError
from revocation_events import (
    BaseEvent,
    GlobalTokensRevoked,
    SubjectTokensRevoked,
    TokenRevoked,
)

__all__ = [
    "MAX_FUTURE_SKEW",
    "Clock",
    "build",
    "check_event",
    "check_watermark",
    "to_datetime",
    "utc_now",
]

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""

MAX_FUTURE_SKEW = timedelta(seconds=60)
"""How far ``issued_before`` may lie ahead of the clock (covers clock skew between hosts)."""


def utc_now() -> datetime:
    return datetime.now(UTC)


def require_id(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRevocationError(f"{name} must be a non-empty string, got {value!r}")
    return value


def to_datetime(name: str, value: datetime | int | float) -> datetime:
    """A timezone-aware datetime from a datetime or a JWT-style epoch number."""
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise InvalidRevocationError(f"{name} must be timezone-aware, got naive {value}")
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRevocationError(
            f"{name} must be a datetime or epoch seconds, got {type(value).__name__}"
        )
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidRevocationError(f"{name} is out of range: {value!r}") from None


def build(model: type[BaseEvent], **fields: Any) -> BaseEvent:
    """Construct ``model``, translating pydantic's errors into ours."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidRevocationError(f"{where}: {first['msg']}") from None


def check_event(event: BaseEvent, now: datetime) -> None:
    """Refuse events that are valid models but useless or dangerous to publish."""
    if isinstance(event, TokenRevoked) and event.expires_at <= now:
        raise InvalidRevocationError(
            f"token {event.jti!r} already expired at {event.expires_at.isoformat()}; "
            "an expired token needs no revocation"
        )
    if isinstance(event, SubjectTokensRevoked | GlobalTokensRevoked):
        check_watermark(event.issued_before, now)


def check_watermark(issued_before: datetime, now: datetime) -> None:
    """Refuse a watermark in the future: it would also reject tokens issued after it."""
    if issued_before > now + MAX_FUTURE_SKEW:
        raise InvalidRevocationError(
            f"issued_before {issued_before.isoformat()} is in the future "
            f"(more than {MAX_FUTURE_SKEW.total_seconds():.0f}s ahead of the clock)"
        )
