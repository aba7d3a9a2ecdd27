"""The wire format: record key, record value (JSON envelope) and headers.

* Value: the event as compact UTF-8 JSON (``model_dump_json``). It is the signed payload.
* Key: the subject (so one subject's events stay ordered in one partition); events without a
  subject are keyed by what they name (``jti:…``, ``sid:…``, ``kid:…``, ``global``).
* Headers: :data:`~revocation_events.SIGNATURE_HEADER` when signed.

Decoding never raises anything but :class:`MalformedEventError`, whose ``reason`` says why the
record was skipped; consumers count and log it and carry on.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pydantic import ConfigDict, TypeAdapter, ValidationError

from revocation_events._errors import MalformedEventError
from revocation_events._models import (
    SCHEMA_VERSION,
    BaseEvent,
    Event,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    TokenRevoked,
    event_adapter,
)
from revocation_events._signing import SIGNATURE_HEADER, EventSigner, EventVerifier

__all__ = [
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_TOPIC",
    "EncodedEvent",
    "EventCodec",
    "record_key",
]

DEFAULT_TOPIC = "revocast.revocations"
DEFAULT_MAX_EVENT_BYTES = 16 * 1024
Headers = Sequence[tuple[str, bytes]]


def _known_types() -> frozenset[str]:
    schema = event_adapter.json_schema()
    return frozenset(schema["discriminator"]["mapping"])


_KNOWN_TYPES = _known_types()


def record_key(event: BaseEvent) -> bytes:
    """The Kafka record key: the subject when there is one, so its events stay in order."""
    sub = event.subject()
    if sub is not None:
        return sub.encode()
    if isinstance(event, TokenRevoked):
        return f"jti:{event.jti}".encode()
    if isinstance(event, SessionRevoked):
        return f"sid:{event.sid}".encode()
    if isinstance(event, KeyRevoked):
        return f"kid:{event.kid}".encode()
    if isinstance(event, GlobalTokensRevoked):
        return b"global"
    raise TypeError(f"no record key rule for {type(event).__name__}")


@dataclass(frozen=True, slots=True)
class EncodedEvent:
    """What goes into one Kafka record."""

    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]


class EventCodec:
    """Encodes events (optionally signing) and decodes records (optionally verifying).

    ``require_signature`` defaults to ``True`` whenever a verifier is given; a codec without a
    verifier accepts unsigned records only if ``require_signature=False`` is passed explicitly.
    """

    def __init__(
        self,
        *,
        signer: EventSigner | None = None,
        verifier: EventVerifier | None = None,
        require_signature: bool | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if require_signature is None:
            # Safe default: a codec that knows no keys refuses every record it decodes.
            require_signature = True
        self._signer = signer
        self._verifier = verifier
        self._require_signature = require_signature
        self._max = max_event_bytes

    def encode(self, event: BaseEvent) -> EncodedEvent:
        if self._signer is not None and event.key_id != self._signer.kid:
            event = event.model_copy(update={"key_id": self._signer.kid})
        event = _exact_offsets(event)
        value = event.model_dump_json(exclude_none=True).encode()
        headers: tuple[tuple[str, bytes], ...] = ()
        if self._signer is not None:
            headers = (self._signer.header(value),)
        return EncodedEvent(key=record_key(event), value=value, headers=headers)

    def decode(self, value: bytes | None, headers: Headers = ()) -> Event:
        """Validate and authenticate one record value; raise :class:`MalformedEventError`."""
        if value is None:
            raise MalformedEventError("invalid", "record has no value (tombstone)")
        if len(value) > self._max:
            raise MalformedEventError("oversized", f"record of {len(value)} bytes > {self._max}")
        kid: str | None = None
        sig = None
        for name, val in headers or ():
            if name == SIGNATURE_HEADER:
                sig = val
                break
        if sig is None:
            if self._require_signature:
                raise MalformedEventError("unsigned", "record has no signature header")
        elif self._verifier is not None:
            kid = self._verifier.verify(value, sig)
        elif self._require_signature:
            raise MalformedEventError("unknown_key", "signed events required but no keys known")
        try:
            event: Event = _validate_json(value)
        except ValidationError as exc:
            raise _classify(value, exc) from None
        if kid is not None and event.key_id is not None and event.key_id != kid:
            raise MalformedEventError("bad_signature", "key_id does not match the signature")
        # The models default these for events being built; on the wire a default would be
        # this host's clock and a random id, different for every consumer and every replay.
        fields_set = event.__pydantic_fields_set__  # what model_fields_set returns, minus a call
        if not fields_set >= _ENVELOPE_REQUIRED:
            missing = ", ".join(sorted(_ENVELOPE_REQUIRED - fields_set))
            raise MalformedEventError("invalid", f"{event.type}: missing {missing}")
        return event


_ENVELOPE_REQUIRED = frozenset({"id", "occurred_at"})
_MINUTE = timedelta(minutes=1)


def _exact_offsets(event: BaseEvent) -> BaseEvent:
    """``event`` with every time whose UTC offset has seconds moved to UTC: pydantic writes
    offsets in whole minutes and drops the rest, so -00:00:59 went out 59 s early (a
    watermark or a token's ``exp`` that much before what the publisher checked)."""
    update = {
        name: value.astimezone(UTC)
        for name, value in event
        if isinstance(value, datetime) and (offset := value.utcoffset()) and offset % _MINUTE
    }
    return event.model_copy(update=update) if update else event


# ``event_adapter.validate_json`` minus its Python wrapper (same schema, same defaults), with
# only object keys cached as Python strings: every value of a record (its id, times, jti) is
# new, so caching them (pydantic's default) only costs a lookup and an insert each.
_validate_json = TypeAdapter(Event, config=ConfigDict(cache_strings="keys")).validator.validate_json


def _classify(value: bytes, exc: ValidationError) -> MalformedEventError:
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return MalformedEventError("not_json", "record value is not JSON")
    except RecursionError:  # nested deeper than Python's stack: no event is shaped like that
        return MalformedEventError("invalid", "record value is nested too deeply")
    if not isinstance(raw, dict):
        return MalformedEventError("invalid", "record value is not a JSON object")
    version = raw.get("v")
    if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
        return MalformedEventError("newer_schema", f"schema version {version} > {SCHEMA_VERSION}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in _KNOWN_TYPES:
        return MalformedEventError("unknown_type", f"unknown event type {str(kind)[:64]!r}")
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"])
    return MalformedEventError("invalid", f"{kind}: {where}: {first['msg']}")
