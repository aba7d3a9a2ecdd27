"""The Revocast producer, embedded by the identity service.

    settings = PublisherSettings.from_env()
    with Publisher(settings) as publisher:
        publisher.revoke_token(claims["jti"], expires_at=claims["exp"], sub=claims["sub"])

Events are signed, keyed by subject (so one subject's events stay ordered) and, by default,
committed to a durable SQLite outbox first so that nothing is lost while Kafka is down.
:func:`ensure_topic` creates or checks the revocation topic.
"""

from producer._errors import InvalidRevocationError, PublishError, UnsafeTopicConfigError
from producer._events import MAX_FUTURE_SKEW, Clock
from producer._publisher import Publisher, PublishResult
from producer._settings import DEFAULT_OUTBOX_PATH, DeliveryMode, PublisherSettings
from producer._topic import TopicReport, ensure_topic, min_retention

__all__ = [
    "DEFAULT_OUTBOX_PATH",
    "MAX_FUTURE_SKEW",
    "Clock",
    "DeliveryMode",
    "InvalidRevocationError",
    "PublishError",
    "PublishResult",
    "Publisher",
    "PublisherSettings",
    "TopicReport",
    "UnsafeTopicConfigError",
    "ensure_topic",
    "min_retention",
]
