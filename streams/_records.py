"""Byte formats the worker writes: table values, state records, offset markers, stats, alerts."""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from consumer_sdk._marker import OFFSETS_KEY_PREFIX as _MARKER_KEY_PREFIX
from revocation_events import SIGNATURE_HEADER, event_adapter
from streams._rules import Rule

__all__ = [
    "OFFSETS_KEY_PREFIX",
    "Headers",
    "Output",
    "decode_stored_rule",
    "encode_stored_rule",
    "event_record",
    "marker_record",
    "rule_record",
    "signature_of",
    "state_key",
    "stored_expiry",
    "tombstone",
]

OFFSETS_KEY_PREFIX = _MARKER_KEY_PREFIX.decode()

Sink = Literal["state", "stats", "alerts"]

Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None
"""Record headers as faust (a mapping) or kafka-python (a list of pairs) gives them."""


def signature_of(headers: Headers) -> bytes | None:
    """The ``revocast-sig`` header of a record, if any."""
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == SIGNATURE_HEADER:
            return value
    return None


@dataclass(frozen=True, slots=True)
class Output:
    """One record the worker must produce, in order."""

    sink: Sink
    key: bytes
    value: bytes | None
    partition: int | None = None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def is_marker(self) -> bool:
        """An offset marker (not an effect of a log record)."""
        return self.sink == "state" and self.key.startswith(_MARKER_KEY_PREFIX)


def encode_stored_rule(rule: Rule) -> bytes:
    """Table value: the original record value and signature plus ``expires_at`` for sweeps."""
    doc = {
        "value": rule.value.decode(),
        # latin-1 maps every byte: with unsigned events allowed and no keys, the header is
        # not verified (so not known to be ASCII) yet is republished byte for byte.
        "sig": None if rule.signature is None else rule.signature.decode("latin-1"),
        "exp": rule.expires_at,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def decode_stored_rule(data: bytes) -> Rule:
    # Trusted: it was verified on the way in, so the value is only parsed, not re-verified.
    doc = json.loads(data)
    value = doc["value"].encode()
    sig = doc["sig"]
    return Rule(
        event=event_adapter.validate_json(value),
        value=value,
        signature=None if sig is None else sig.encode("latin-1"),
    )


def stored_expiry(data: bytes) -> float | None:
    """``expires_at`` of a table value without parsing the event."""
    exp = json.loads(data)["exp"]
    return None if exp is None else float(exp)


def state_key(rule: Rule) -> str:
    """The state-topic key of ``rule``'s record as the worker writes it: its rule key and
    event id. One key per event, so that a record removes (by compaction) nothing but older
    records of that very event, whoever wrote them and in whatever order they land."""
    return f"{rule.key}#{rule.event.id}"


def event_record(rule: Rule, partition: int) -> Output:
    """The worker's state record of ``rule``, keyed by :func:`state_key`."""
    headers = () if rule.signature is None else ((SIGNATURE_HEADER, rule.signature),)
    return Output("state", state_key(rule).encode(), rule.value, partition, headers)


def rule_record(rule: Rule, partition: int) -> Output:
    """The state record of ``rule`` keyed by its rule key alone, as workers before per-event
    keys wrote it and ``revocast rebuild-state`` (which runs with no worker) still does."""
    headers = () if rule.signature is None else ((SIGNATURE_HEADER, rule.signature),)
    return Output("state", rule.key.encode(), rule.value, partition, headers)


def tombstone(key: str, partition: int) -> Output:
    return Output("state", key.encode(), None, partition)


def marker_record(
    log_topic: str, partition: int, offset: int, *, topic_id: uuid.UUID | None = None
) -> Output:
    """The offset marker of ``partition``. ``topic_id``: the id of the log's incarnation the
    offsets are of (KIP-516; ``None``: the broker gives none), without which SDKs that know
    the log's id do not trust the marker."""
    value: dict[str, object] = {"topic": log_topic, "partition": partition, "offset": offset}
    if topic_id is not None:
        value["topic_id"] = str(topic_id)
    return Output(
        "state",
        f"{OFFSETS_KEY_PREFIX}{partition}".encode(),
        json.dumps(value, separators=(",", ":")).encode(),
        partition,
    )
