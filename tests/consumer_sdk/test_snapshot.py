"""The snapshot format: chunk encoding round trip, what a chunk or a manifest may not be."""

from __future__ import annotations

import base64
import json
import uuid
from array import array
from typing import Any

import pytest

from consumer_sdk import ConsumerSettings
from consumer_sdk._snapshot import (
    ChunkRef,
    Manifest,
    SnapshotError,
    chunk_key,
    decode_chunk,
    encode_chunks,
    manifest_key,
    parse_key,
    sign_manifest,
    verify_manifest,
)
from consumer_sdk._snapshot_reader import snapshot_topic
from revocation_events import (
    EventCodec,
    EventSigner,
    EventVerifier,
    SettingsError,
    SigningKey,
    TokenRevoked,
    public_key_spec,
)
from tests.consumer_sdk._helpers import dt

KEY = SigningKey.hmac("snap", b"k" * 32)
VERIFIER = EventVerifier([KEY.verification_key()])
ROWS: list[tuple[str, list[Any]]] = [
    ("sid", ["s1", 1_700_000_000.25, 1_700_003_600.5]),
    ("sub_wm", ["alice", 1_699_999_000.0, 1_700_000_000.0, 1_700_003_600.0]),
    ("sub_block", ["bob", 1_700_000_000.0, 2**127 + 5, True, None]),
    ("sub_block", ["carol", 1_700_000_000.0, 7, False, 1_700_003_600.0]),
    ("sub_del", ["dave", 1_700_000_000.0, 1_700_003_600.0]),
    ("sub_ver", ["erin", 7, 1_700_000_000.0, 1_700_003_600.0]),
    ("kid", ["k-2026", 1_700_000_000.0]),
    ("global", [1_699_999_000.0, 1_700_000_000.0, 1_700_003_600.0]),
]


def manifest(**changes: Any) -> Manifest:
    values: dict[str, Any] = {
        "topic": "revs",
        "partition": 2,
        "offset": 41,
        "generation": 1_700_000_000_123,
        "created_at": 1_700_000_000.5,
        "max_token_lifetime": 3600.0,
        "rules": 3,
        "chunks": (ChunkRef(0, 10, "ab" * 32),),
    }
    values.update(changes)
    return Manifest(**values)


def test_jtis_and_rows_survive_encoding_split_into_chunks_within_the_size_limit() -> None:
    jtis = [
        (f'jti-{n:06d}-ünïcode\n"quoted"', 1_700_000_000 + n, 1_699_000_000 + n)
        for n in range(3000)
    ]
    rows = ROWS[:-1] * 40 + ROWS[-1:]  # one global watermark per partition
    chunks = encode_chunks(jtis, rows, max_bytes=8192)
    assert len(chunks) > 10
    assert all(len(c) <= 8192 for c in chunks)
    decoded = [decode_chunk(c) for c in chunks]
    back = [t for d in decoded for t in zip(d.jti, d.jti_deadline, d.jti_time, strict=True)]
    assert back == jtis
    found = [(kind, row) for d in decoded for kind, rs in d.rows.items() for row in rs]
    assert sorted(found, key=repr) == sorted(rows, key=repr)


def test_a_rule_larger_than_a_chunk_is_an_error_not_a_truncation() -> None:
    with pytest.raises(SnapshotError, match="one rule takes"):
        encode_chunks([("x" * 10_000, 1, 1)], [], max_bytes=4096)


def _chunk(**doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _u32(*values: int) -> str:
    return base64.b64encode(array("I", values).tobytes()).decode()


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        _chunk(jti=["a"], jti_deadline=_u32(1, 2), jti_time=_u32(1)),
        _chunk(jti=["a", "b"], jti_deadline=_u32(5, 4), jti_time=_u32(1, 1)),
        _chunk(jti=[1], jti_deadline=_u32(1), jti_time=_u32(1)),
        _chunk(jti=["a"], jti_deadline="!!", jti_time=_u32(1)),
        _chunk(future_rule=[]),
        _chunk(sid=[["s", 1.0]]),
        _chunk(sid=[["s", True, 2.0]]),
        _chunk(sid=[["s", 1.0, 1e300]]),
        _chunk(sub_block=[["b", 1.0, 1, True, 5.0]]),
        _chunk(sub_block=[["b", 1.0, 1, False, None]]),
        _chunk(sub_block=[["b", 1.0, 1, False, 1e300]]),
        _chunk(sub_block=[["b", 1.0, 1, False, -1e12]]),
        _chunk(sub_ver=[["v", -1, 1.0, 2.0]]),
        _chunk(**{"global": [[1.0, 1.0, 2.0], [1.0, 1.0, 2.0]]}),
        b'{"sid": [["s", NaN, 1.0]]}',
    ],
    ids=[
        "not-json",
        "not-an-object",
        "columns-differ",
        "unsorted-deadlines",
        "jti-not-a-string",
        "bad-base64",
        "unknown-member",
        "short-row",
        "bool-for-a-time",
        "time-out-of-range",
        "block-with-deadline",
        "unblock-without-deadline",
        "unblock-deadline-out-of-range",
        "unblock-deadline-negative",
        "negative-version",
        "two-global-watermarks",
        "nan",
    ],
)
def test_an_invalid_chunk_is_refused_as_bad_chunk(data: bytes) -> None:
    with pytest.raises(SnapshotError) as caught:
        decode_chunk(data)
    assert caught.value.reason == "bad_chunk"


def test_a_signed_manifest_round_trips() -> None:
    value = manifest().encode()
    _, signature = sign_manifest(value, KEY)
    assert verify_manifest(value, signature, VERIFIER) == manifest()


def test_a_manifest_names_the_incarnation_of_its_log_topic() -> None:
    bound = manifest(topic_id=uuid.UUID("8992b4ef-73f7-4e3a-b980-4c8c10c42e1d"))
    value = bound.encode()
    assert json.loads(value)["topic_id"] == "8992b4ef-73f7-4e3a-b980-4c8c10c42e1d"
    assert verify_manifest(value, sign_manifest(value, KEY)[1], VERIFIER) == bound
    assert "topic_id" not in json.loads(manifest().encode())  # a broker without topic ids


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        (SigningKey.hmac("other", b"k" * 32), "unknown_key"),
        (SigningKey.hmac("snap", b"x" * 32), "bad_signature"),
        (None, "unsigned"),
    ],
    ids=["unknown-key", "same-kid-other-secret", "unsigned"],
)
def test_a_manifest_not_signed_by_a_trusted_key_is_refused(
    signer: SigningKey | None, reason: str
) -> None:
    value = manifest().encode()
    signature = None if signer is None else sign_manifest(value, signer)[1]
    with pytest.raises(SnapshotError) as caught:
        verify_manifest(value, signature, VERIFIER)
    assert caught.value.reason == reason


def test_a_manifest_altered_after_signing_is_refused() -> None:
    value = manifest().encode()
    _, signature = sign_manifest(value, KEY)
    with pytest.raises(SnapshotError) as caught:
        verify_manifest(value.replace(b'"offset":41', b'"offset":99'), signature, VERIFIER)
    assert caught.value.reason == "bad_signature"


def test_an_event_signature_never_passes_as_a_manifest_signature() -> None:
    # Same key material for events and snapshots (a misconfiguration) still cannot turn a
    # signed event record into a manifest: the manifest signature covers a distinct prefix.
    value = manifest().encode()
    event_signature = KEY.sign(value)
    with pytest.raises(SnapshotError) as caught:
        verify_manifest(value, event_signature, VERIFIER)
    assert caught.value.reason == "bad_signature"
    encoded = EventCodec(signer=EventSigner(KEY)).encode(
        TokenRevoked(issuer="t", jti="j", expires_at=dt(2_000_000_000))
    )
    with pytest.raises(SnapshotError):
        verify_manifest(encoded.value, dict(encoded.headers)["revocast-sig"], VERIFIER)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"format": 2}, "format"),
        ({"offset": -2}, "malformed"),
        ({"offset": "41"}, "malformed"),
        ({"chunks": [[0, 10, "zz"]]}, "malformed"),
        ({"topic": None}, "malformed"),
        ({"topic_id": "not-a-uuid"}, "malformed"),
        ({"topic_id": 5}, "malformed"),
    ],
)
def test_a_manifest_with_unexpected_fields_is_refused(change: dict[str, Any], reason: str) -> None:
    doc = json.loads(manifest().encode())
    doc.update(change)
    with pytest.raises(SnapshotError) as caught:
        Manifest.decode(json.dumps(doc).encode())
    assert caught.value.reason == reason


def test_keys_name_the_partition_generation_and_index() -> None:
    assert parse_key(chunk_key(3, 17, 2)) == (3, 17, 2)
    assert parse_key(manifest_key(3)) == (3, None, None)
    for other in (None, b"", b"3", b"3/x/1", b"jti:abc", b"\xff/manifest", b"1/2/3/4"):
        assert parse_key(other) is None


def test_snapshot_keys_and_topic_come_from_the_environment() -> None:
    env = {
        "REVOCAST_ALGORITHMS": "HS256",
        "REVOCAST_JWT_KEY": "k" * 32,
        "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true",
        "REVOCAST_TOPIC": "revs",
    }
    default = ConsumerSettings.from_env(environ=env)
    assert (default.snapshot_keys, snapshot_topic(default)) == ((), "revs.snapshots")
    chosen = ConsumerSettings.from_env(
        environ={
            **env,
            "REVOCAST_SNAPSHOT_KEYS": public_key_spec(KEY),
            "REVOCAST_SNAPSHOT_TOPIC": "snaps",
        }
    )
    assert [k.kid for k in chosen.snapshot_keys] == ["snap"]
    assert snapshot_topic(chosen) == "snaps"
    with pytest.raises(SettingsError, match="REVOCAST_SNAPSHOT_KEYS"):
        ConsumerSettings.from_env(environ={**env, "REVOCAST_SNAPSHOT_KEYS": "snap:rot13:x"})
