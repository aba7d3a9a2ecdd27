"""Packed, signed snapshots of the revocation state: the format, and loading one into the store.

Loading the compacted state topic still costs one Kafka record, one signature check and one
pydantic validation per live event (~23-27 µs here: ~23 s for a million). A snapshot instead
packs the rules of one log partition into a few large records, authenticated by one signature.

Topic ``<log>.snapshots`` (compacted, as many partitions as the log)
-------------------------------------------------------------------

Snapshot partition *p* holds snapshots of log partition *p* only, written by the snapshotter
of the streams worker (:mod:`streams._snapshot`), which replays the log exactly like an SDK
does. A snapshot of generation *g* (an integer, increasing per partition) is:

Chunks — key ``<p>/<g>/<i>`` for ``i`` in ``0..n-1``, no header, value a UTF-8 JSON object of
at most ``chunk_bytes`` (default 1,000,000) with any of these members (absent = empty)::

    "jti", "jti_deadline", "jti_time"   revoked jtis, as columns: a list of jti strings,
                                        and two base64 strings of little-endian uint32s: the
                                        deadline (expires_at, whole seconds rounded up) and
                                        the revocation time (occurred_at, rounded down).
                                        Sorted by deadline.
    "sid"        [[sid, at, until], ...]
    "sub_wm"     [[sub, issued_before, at, until], ...]            watermark
    "sub_block"  [[sub, at, event_id_int, blocked, until|null], ...]   null: forever
    "sub_del"    [[sub, at, until], ...]                            deleted
    "sub_ver"    [[sub, min_version, at, until], ...]
    "kid"        [[kid, at], ...]
    "global"     [[issued_before, at, until]]                       at most one row

Times are epoch seconds (floats); each row is what ``RevocationState`` holds for the rule
after merging all its events, its deadline ``until`` computed with the manifest's
``max_token_lifetime``. Unknown members make a chunk invalid: a reader must never silently
drop rules it does not understand.

Manifest — key ``<p>/manifest``, written after its chunks, header ``revocast-sig`` (the event
signature format) over ``b"revocast.snapshot.manifest.v1\\n" + value`` — the prefix keeps a
manifest signature from ever passing as an event signature — value JSON::

    {"format": 1, "topic": "<log>", "topic_id": "<uuid>", "partition": p, "offset": o,
     "generation": g, "created_at": t, "max_token_lifetime": L_w, "rules": n,
     "chunks": [[chunk_offset, size, "<sha256 hex>"], ...]}

``topic_id`` is the id Kafka gave the incarnation of the log the snapshot was computed from
(KIP-516: a log deleted and recreated under the same name gets a new one, and its offsets
mean other records). It is absent only when the broker gives no topic ids (before 2.8) —
and in manifests written before it existed, which readers that know the log's id refuse.

It promises: the chunks, at those offsets of snapshot partition *p*, hold exactly the rules
that applying log partition *p* from its start up to and including offset *o* gives (``o =
-1``: an empty partition) for a reader whose ``max_token_lifetime`` is ``L_w``, minus rules
that no longer affect any token even with the largest leeway (``MAX_LEEWAY``) and a reader's
clock up to ``streams._snapshot_rules.CLOCK_SKEW`` (60 s) behind the writer's. After writing
generation *g*, the writer tombstones the chunks of the generation it replaced.

Reading partition *p* (:func:`consumer_sdk._snapshot_reader.load_snapshots`):

1. find the last manifest: read the partition's tail, going further back only if the tail
   holds none (compaction keeps one manifest; the chunks of later, unfinished generations and
   the tombstones of earlier ones are all that can follow it);
2. refuse it — the partition then falls back to the state topic, then to the log, with the
   reason logged and counted — when it is unsigned or not signed by a key in
   ``snapshot_keys`` (``unsigned``, ``unknown_key``, ``bad_signature``), not a manifest
   (``malformed``, ``format``), for another topic or partition (``other_topic``), for
   another incarnation of the log (``other_incarnation``: its ``topic_id`` is not the log's
   current one; ``no_topic_id``: one of them has no id, so nothing tells), covers an
   offset at or beyond the log's end (``beyond_end``) or before the log's start minus one
   (``before_log_start``: the records in between are gone), or was computed for another
   ``max_token_lifetime`` than the reader's (``lifetime``: deadlines depend on it);
3. read the chunks at the listed offsets; refuse on a missing chunk (``missing_chunk``), a
   hash mismatch (``bad_hash``) or a chunk that does not decode (``bad_chunk``);
4. load the rules (:func:`restore`), then read log partition *p* from ``o + 1``. Overlap is
   harmless (applying an event is idempotent); the manifest rule guarantees no gap.

With no ``snapshot_keys`` configured, snapshots are not read at all.

Loading replays each row as the one event that gives it (a ``SessionRevoked`` at ``at``
expiring at ``until``...), through ``RevocationState.apply``: rules merge across partitions
and with what the store holds exactly as events do, whatever the merge rules are.

What a snapshot load equals: the same ``RevocationState.snapshot()`` as replaying the log,
for every rule whose events are all still in force. A rule that merged an event that has
expired since may differ (the writer merged it while it was live, a fresh replay skips it) —
a difference about tokens that have expired, which a continuously running SDK shows too. A
snapshot also keeps what a log replay limited to ``max_token_lifetime`` back loses: key
revocations and blocks older than that (as the state topic does). Revocation listeners are
not called for loaded rules.
"""

from __future__ import annotations

import base64
import binascii
import json
import operator
import sys
import uuid
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from typing import Any

from consumer_sdk._state import RevocationState
from revocation_events import (
    SIGNATURE_HEADER,
    Event,
    EventVerifier,
    GlobalTokensRevoked,
    KeyRevoked,
    MalformedEventError,
    RevocastError,
    SessionRevoked,
    SigningKey,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "FORMAT",
    "Chunk",
    "ChunkRef",
    "Manifest",
    "SnapshotError",
    "chunk_key",
    "decode_chunk",
    "encode_chunks",
    "event_of",
    "manifest_key",
    "parse_key",
    "restore",
    "sign_manifest",
    "verify_manifest",
]

FORMAT = 1
DEFAULT_CHUNK_BYTES = 1_000_000
_SIGNED_PREFIX = b"revocast.snapshot.manifest.v1\n"
_NIL = uuid.UUID(int=0)
_ROW_KINDS = ("sid", "sub_wm", "sub_block", "sub_del", "sub_ver", "kid", "global")

if array("I").itemsize != 4:  # pragma: no cover - every CPython platform we support
    raise ImportError("snapshots need a 4-byte array('I')")


class SnapshotError(RevocastError):
    """A snapshot (or one of its parts) is unusable; ``reason`` is the counted reason."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _num(value: object) -> float:
    if type(value) is not int and type(value) is not float:
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _str(value: object) -> str:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _sha(value: object) -> str:
    text = _str(value)
    if len(text) != 64 or text.strip("0123456789abcdef"):
        raise ValueError("not a sha256 hex digest")
    return text


def _uuid(value: object) -> uuid.UUID | None:
    return None if value is None else uuid.UUID(_str(value))


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number")


# -- keys -----------------------------------------------------------------------------------


def manifest_key(partition: int) -> bytes:
    return f"{partition}/manifest".encode()


def chunk_key(partition: int, generation: int, index: int) -> bytes:
    return f"{partition}/{generation}/{index}".encode()


def parse_key(key: bytes | None) -> tuple[int, int, int] | tuple[int, None, None] | None:
    """``(p, g, i)`` of a chunk key, ``(p, None, None)`` of a manifest key, else ``None``."""
    try:
        parts = (key or b"").decode("ascii").split("/")
        if len(parts) == 2 and parts[1] == "manifest":
            return int(parts[0]), None, None
        if len(parts) == 3:
            return int(parts[0]), int(parts[1]), int(parts[2])
    except (UnicodeDecodeError, ValueError):
        pass
    return None


# -- the manifest ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkRef:
    offset: int
    size: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    topic: str
    partition: int
    offset: int
    """The last log offset the snapshot covers (-1: none, the partition was empty)."""
    generation: int
    created_at: float
    max_token_lifetime: float
    rules: int
    chunks: tuple[ChunkRef, ...]
    topic_id: uuid.UUID | None = None
    """The id of the log's incarnation (``None``: the broker gives none)."""

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "format": FORMAT,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "generation": self.generation,
            "created_at": self.created_at,
            "max_token_lifetime": self.max_token_lifetime,
            "rules": self.rules,
            "chunks": [[c.offset, c.size, c.sha256] for c in self.chunks],
        }
        if self.topic_id is not None:
            doc["topic_id"] = str(self.topic_id)
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, value: bytes) -> Manifest:
        try:
            doc = json.loads(value, parse_constant=_no_constant)
            if doc["format"] != FORMAT:
                raise SnapshotError("format", f"snapshot format {doc['format']!r} unknown")
            chunks = tuple(
                ChunkRef(_int(offset), _int(size), _sha(digest))
                for offset, size, digest in doc["chunks"]
            )
            manifest = cls(
                topic=_str(doc["topic"]),
                partition=_int(doc["partition"]),
                offset=_int(doc["offset"]),
                generation=_int(doc["generation"]),
                created_at=_num(doc["created_at"]),
                max_token_lifetime=_num(doc["max_token_lifetime"]),
                rules=_int(doc["rules"]),
                chunks=chunks,
                topic_id=_uuid(doc.get("topic_id")),
            )
        except SnapshotError:
            raise
        except (ValueError, TypeError, KeyError) as exc:
            raise SnapshotError("malformed", f"not a snapshot manifest ({exc})") from None
        if manifest.offset < -1 or any(c.offset < 0 or c.size < 0 for c in chunks):
            raise SnapshotError("malformed", "negative offset in a snapshot manifest")
        return manifest


def sign_manifest(value: bytes, key: SigningKey) -> tuple[str, bytes]:
    """The signature header for an encoded manifest."""
    return SIGNATURE_HEADER, key.sign(_SIGNED_PREFIX + value)


def verify_manifest(
    value: bytes | None, signature: bytes | None, verifier: EventVerifier
) -> Manifest:
    """The manifest, if ``signature`` verifies with one of the verifier's keys."""
    if value is None:
        raise SnapshotError("malformed", "the manifest is a tombstone")
    try:
        verifier.verify(_SIGNED_PREFIX + value, signature)
    except MalformedEventError as exc:
        raise SnapshotError(exc.reason, f"snapshot manifest: {exc}") from None
    return Manifest.decode(value)


# -- chunks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Chunk:
    """One decoded chunk: jti columns sorted by deadline, and rows of the other rules."""

    jti: list[str] = field(default_factory=list)
    jti_deadline: array[int] = field(default_factory=lambda: array("I"))
    jti_time: array[int] = field(default_factory=lambda: array("I"))
    rows: dict[str, list[list[Any]]] = field(default_factory=dict)

    @property
    def rules(self) -> int:
        return len(self.jti) + sum(len(r) for r in self.rows.values())


def _u32_array(text: object) -> array[int]:
    if not isinstance(text, str):
        raise TypeError("packed column is not a string")
    out = array("I")
    out.frombytes(base64.b64decode(text, validate=True))
    if sys.byteorder == "big":  # pragma: no cover
        out.byteswap()
    return out


def _u32_text(values: array[int]) -> str:
    if sys.byteorder == "big":  # pragma: no cover
        values = array("I", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def decode_chunk(data: bytes) -> Chunk:
    """Parse and check one chunk; :class:`SnapshotError` (``bad_chunk``) if it is invalid."""
    try:
        doc = json.loads(data, parse_constant=_no_constant)
        if not isinstance(doc, dict):
            raise TypeError("a chunk is a JSON object")
        unknown = set(doc) - {"jti", "jti_deadline", "jti_time", *_ROW_KINDS}
        if unknown:
            raise ValueError(f"unknown members {sorted(unknown)}")
        jti = doc.get("jti", [])
        deadline = _u32_array(doc.get("jti_deadline", ""))
        times = _u32_array(doc.get("jti_time", ""))
        if not isinstance(jti, list) or not len(jti) == len(deadline) == len(times):
            raise ValueError("jti columns differ in length")
        if not all(type(j) is str for j in jti):
            raise TypeError("a jti is not a string")
        if any(map(operator.gt, deadline, islice(deadline, 1, None))):
            raise ValueError("jtis are not sorted by deadline")
        rows = {kind: _check_rows(kind, doc[kind]) for kind in _ROW_KINDS if kind in doc}
    except (ValueError, TypeError, binascii.Error) as exc:
        raise SnapshotError("bad_chunk", f"snapshot chunk does not decode ({exc})") from None
    return Chunk(jti, deadline, times, rows)


_NUM = (int, float)
# Times a datetime can hold, as events can: 0001-01-01 .. 9999-12-31 (an event may be dated
# before 1970, and a key revocation or a block dated so never expires). The last datetime's
# timestamp rounds up to _LATEST as a float, which is itself no datetime: see _dt.
_EARLIEST = -62_135_596_800
_LATEST = 253_402_300_800
_LAST = datetime.max.replace(tzinfo=UTC)
_SHAPES: dict[str, tuple[tuple[type, ...], ...]] = {
    "sid": ((str,), _NUM, _NUM),
    "sub_wm": ((str,), _NUM, _NUM, _NUM),
    "sub_block": ((str,), _NUM, (int,), (bool,), (*_NUM, type(None))),
    "sub_del": ((str,), _NUM, _NUM),
    "sub_ver": ((str,), (int,), _NUM, _NUM),
    "kid": ((str,), _NUM),
    "global": (_NUM, _NUM, _NUM),
}


def _check_rows(kind: str, rows: object) -> list[list[Any]]:
    shape = _SHAPES[kind]
    if not isinstance(rows, list):
        raise TypeError(f"{kind} is not a list")
    for row in rows:
        if not isinstance(row, list) or len(row) != len(shape):
            raise ValueError(f"a {kind} row has the wrong shape")
        for value, types in zip(row, shape, strict=True):
            # bool is an int: accept it only where a bool is meant.
            if type(value) not in types or (type(value) is bool) != (types == (bool,)):
                raise TypeError(f"a {kind} row holds a {type(value).__name__}")
            # Every time, the optional deadline of an unblock too: restore makes datetimes.
            if float in types and value is not None and not _EARLIEST <= value <= _LATEST:
                raise ValueError(f"a {kind} row holds a time out of range")
        if kind == "sub_block" and not 0 <= row[2] < 2**128:
            raise ValueError("an event id out of range")
        if kind == "sub_block" and row[3] != (row[4] is None):
            raise ValueError("a block without a deadline is forever, an unblock has one")
        if kind == "sub_ver" and not 0 <= row[1] <= 2**53:
            raise ValueError("a version out of range")
    if kind == "global" and len(rows) > 1:
        raise ValueError("more than one global watermark")
    return rows


def encode_chunks(
    jtis: Sequence[tuple[str, int, int]],
    rows: Sequence[tuple[str, list[Any]]],
    max_bytes: int = DEFAULT_CHUNK_BYTES,
) -> list[bytes]:
    """Chunks of at most ``max_bytes`` holding ``jtis`` — ``(jti, deadline, time)`` sorted by
    deadline — and ``rows`` — ``(kind, row)`` as in the module docstring."""
    out: list[bytes] = []
    for part in _sized(jtis, lambda item: len(item[0]) + 16, max_bytes):
        out.extend(_fit("jti", part, max_bytes))
    for part in _sized(rows, lambda item: len(json.dumps(item[1])) + 16, max_bytes):
        out.extend(_fit("rows", part, max_bytes))
    return out


def _sized(items: Sequence[Any], cost: Any, budget: int) -> Iterator[Sequence[Any]]:
    """Consecutive slices of ``items`` whose estimated size stays within ``budget``."""
    start = 0
    size = 0
    for i, item in enumerate(items):
        c = cost(item)
        if size + c > budget and i > start:
            yield items[start:i]
            start, size = i, 0
        size += c
    if start < len(items):
        yield items[start:]


def _fit(what: str, items: Sequence[Any], max_bytes: int) -> list[bytes]:
    """Encode a slice; split it in halves while the estimate was too optimistic."""
    data = _encode_jtis(items) if what == "jti" else _encode_rows(items)
    if len(data) <= max_bytes:
        return [data]
    if len(items) == 1:
        raise SnapshotError("too_big", f"one rule takes {len(data)} bytes > {max_bytes}")
    half = len(items) // 2
    return _fit(what, items[:half], max_bytes) + _fit(what, items[half:], max_bytes)


def _encode_jtis(items: Sequence[tuple[str, int, int]]) -> bytes:
    doc = {
        "jti": [j for j, _, _ in items],
        "jti_deadline": _u32_text(array("I", [d for _, d, _ in items])),
        "jti_time": _u32_text(array("I", [t for _, _, t in items])),
    }
    return _dump(doc)


def _encode_rows(items: Sequence[tuple[str, list[Any]]]) -> bytes:
    doc: dict[str, list[list[Any]]] = {}
    for kind, row in items:
        doc.setdefault(kind, []).append(row)
    return _dump(doc)


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


# -- the reader's side: loading chunks into the store ---------------------------------------


def restore(state: RevocationState, chunks: Sequence[Chunk]) -> dict[str, int]:
    """Load decoded chunks into ``state`` (sync thread only); return rules loaded per kind.

    Jtis, the bulk, are written straight into a new fingerprint table that is swapped in
    whole (as the table's own rebuild does, so lock-free readers never see it half-filled);
    every other rule goes through ``state.apply`` as the equivalent event, so it merges
    exactly as events do. A rule already dead for this state is skipped, as ``apply`` would.
    """
    loaded = {"jti": _restore_jtis(state, chunks)}
    for chunk in chunks:
        for kind, rows in chunk.rows.items():
            loaded[kind] = loaded.get(kind, 0) + sum(
                [state.apply(event_of(kind, row)) for row in rows]
            )
    return loaded


def _dt(ts: float) -> datetime:
    return _LAST if ts >= _LATEST else datetime.fromtimestamp(ts, UTC)


def event_of(kind: str, row: list[Any]) -> Event:
    """The event that gives exactly this row to ``RevocationState.apply`` (its
    ``expires_at`` is the row's deadline, which already includes ``at + L``)."""
    build = _construct
    if kind == "sid":
        sid, at, until = row
        return build(SessionRevoked, sid=sid, occurred_at=_dt(at), expires_at=_dt(until))
    if kind == "sub_wm":
        sub, t, at, until = row
        return build(
            SubjectTokensRevoked,
            sub=sub,
            issued_before=_dt(t),
            occurred_at=_dt(at),
            expires_at=_dt(until),
        )
    if kind == "sub_block":
        sub, at, event_id, blocked, until = row
        if blocked or until is None:
            return build(SubjectBlocked, sub=sub, occurred_at=_dt(at), id=uuid.UUID(int=event_id))
        return build(
            SubjectUnblocked,
            sub=sub,
            occurred_at=_dt(at),
            id=uuid.UUID(int=event_id),
            expires_at=_dt(until),
        )
    if kind == "sub_del":
        sub, at, until = row
        return build(SubjectDeleted, sub=sub, occurred_at=_dt(at), expires_at=_dt(until))
    if kind == "sub_ver":
        sub, version, at, until = row
        return build(
            SubjectVersionBumped,
            sub=sub,
            min_version=version,
            occurred_at=_dt(at),
            expires_at=_dt(until),
        )
    if kind == "kid":
        kid, at = row
        return build(KeyRevoked, kid=kid, occurred_at=_dt(at))
    t, at, until = row
    return build(
        GlobalTokensRevoked, issued_before=_dt(t), occurred_at=_dt(at), expires_at=_dt(until)
    )


def _construct(model: Any, **fields: Any) -> Event:
    # model_construct: the values were validated when the chunk was decoded.
    fields.setdefault("id", _NIL)
    event: Event = model.model_construct(issuer="snapshot", **fields)
    return event


def _restore_jtis(state: RevocationState, chunks: Sequence[Chunk]) -> int:
    return state.restore_jtis((c.jti, c.jti_deadline, c.jti_time) for c in chunks)
