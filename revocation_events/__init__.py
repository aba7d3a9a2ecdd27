"""The revocation event contract shared by the producer, the consumer SDK and the streams app.

A revocation is one of the event kinds below, published as one Kafka record: the key keeps a
subject's events in order, the value is the JSON envelope, a header carries the signature.
"""

from revocation_events._errors import MalformedEventError, RevocastError, SkipReason
from revocation_events._kafka_clients import (
    KafkaUnreachableError,
    close_producer,
    closing_on_failure,
    require_reachable,
)
from revocation_events._models import (
    SCHEMA_VERSION,
    BaseEvent,
    Event,
    EventType,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
    event_adapter,
)
from revocation_events._settings import (
    KafkaSettings,
    SettingsError,
    env_bool,
    env_float,
    env_int,
    env_signing_key,
    env_str,
    env_verification_keys,
)
from revocation_events._signing import (
    SIGNATURE_HEADER,
    EventSigner,
    EventVerifier,
    KeySpecError,
    SigningKey,
    VerificationKey,
    parse_signing_key,
    parse_verification_keys,
    public_key_spec,
)
from revocation_events._wire import (
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_TOPIC,
    EncodedEvent,
    EventCodec,
    record_key,
)

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_TOPIC",
    "SCHEMA_VERSION",
    "SIGNATURE_HEADER",
    "BaseEvent",
    "EncodedEvent",
    "Event",
    "EventCodec",
    "EventSigner",
    "EventType",
    "EventVerifier",
    "GlobalTokensRevoked",
    "KafkaSettings",
    "KafkaUnreachableError",
    "KeyRevoked",
    "KeySpecError",
    "MalformedEventError",
    "RevocastError",
    "SessionRevoked",
    "SettingsError",
    "SigningKey",
    "SkipReason",
    "SubjectBlocked",
    "SubjectDeleted",
    "SubjectTokensRevoked",
    "SubjectUnblocked",
    "SubjectVersionBumped",
    "TokenRevoked",
    "VerificationKey",
    "close_producer",
    "closing_on_failure",
    "env_bool",
    "env_float",
    "env_int",
    "env_signing_key",
    "env_str",
    "env_verification_keys",
    "event_adapter",
    "parse_signing_key",
    "parse_verification_keys",
    "public_key_spec",
    "record_key",
    "require_reachable",
]
