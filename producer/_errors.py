"""The producer's errors, rooted in :class:`revocation_events.RevocastError`.

Grouped by how the caller reacts: :class:`InvalidRevocationError` is a bug in the caller's
arguments (fix the call; nothing was sent), :class:`PublishError` is an infrastructure failure
(retry, or use the outbox), :class:`UnsafeTopicConfigError` is a topic layout that would lose
revocations.
"""

from __future__ import annotations

from revocation_events import RevocastError

__all__ = ["InvalidRevocationError", "PublishError", "UnsafeTopicConfigError"]


class InvalidRevocationError(RevocastError, ValueError):
    """The arguments do not describe a valid revocation. Raised before anything is sent."""


class PublishError(RevocastError):
    """The event could not be delivered to Kafka (only raised in ``delivery="direct"``), could
    not be stored in the outbox (``delivery="outbox"``), or the publisher is closed. The Kafka
    or SQLite error, if any, is the ``__cause__``."""


class UnsafeTopicConfigError(RevocastError, ValueError):
    """A requested topic configuration would let Kafka drop revocations that still matter."""
