from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta, timezone

import pytest

from revocation_events import (
    DEFAULT_MAX_EVENT_BYTES,
    SIGNATURE_HEADER,
    BaseEvent,
    EventCodec,
    EventSigner,
    EventVerifier,
    GlobalTokensRevoked,
    KeyRevoked,
    MalformedEventError,
    SessionRevoked,
    SigningKey,
    SubjectBlocked,
    SubjectTokensRevoked,
    TokenRevoked,
    record_key,
)
from tests.revocation_events.test_models import LATER, every_kind

KEY = SigningKey.hmac("k1", os.urandom(32))


def codec() -> EventCodec:
    return EventCodec(signer=EventSigner(KEY), verifier=EventVerifier([KEY.verification_key()]))


@pytest.mark.parametrize("event", every_kind(), ids=lambda e: e.type)
def test_every_kind_survives_encode_and_decode_with_its_signature(event: BaseEvent) -> None:
    c = codec()
    encoded = c.encode(event)
    decoded = c.decode(encoded.value, encoded.headers)
    assert decoded.model_dump(exclude={"key_id"}) == event.model_dump(exclude={"key_id"})
    assert decoded.key_id == "k1"
    assert encoded.key == record_key(event)


def test_record_key_is_the_subject_so_a_subjects_events_stay_in_one_partition() -> None:
    assert record_key(SubjectBlocked(issuer="i", sub="alice")) == b"alice"
    assert record_key(TokenRevoked(issuer="i", jti="j", sub="alice", expires_at=LATER)) == b"alice"


def test_record_key_names_the_object_when_there_is_no_subject() -> None:
    assert record_key(TokenRevoked(issuer="i", jti="j", expires_at=LATER)) == b"jti:j"
    assert record_key(SessionRevoked(issuer="i", sid="s", expires_at=LATER)) == b"sid:s"
    assert record_key(KeyRevoked(issuer="i", kid="k")) == b"kid:k"
    now = datetime.now(UTC)
    event = GlobalTokensRevoked(issuer="i", issued_before=now, expires_at=now + timedelta(hours=1))
    assert record_key(event) == b"global"


def test_the_value_is_compact_json_without_nulls() -> None:
    encoded = codec().encode(SubjectBlocked(issuer="idp", sub="a"))
    body = json.loads(encoded.value)
    assert body["type"] == "subject.blocked"
    assert "expires_at" not in body
    assert b" " not in encoded.value


def _reason(value: bytes | None, headers: tuple[tuple[str, bytes], ...] = ()) -> str:
    with pytest.raises(MalformedEventError) as info:
        codec().decode(value, headers)
    return info.value.reason


def _signed(body: object) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    value = json.dumps(body).encode()
    return value, (EventSigner(KEY).header(value),)


def test_a_record_altered_after_signing_is_refused_as_bad_signature() -> None:
    encoded = codec().encode(SubjectBlocked(issuer="idp", sub="alice"))
    tampered = encoded.value.replace(b"subject.blocked", b"subject.unblocked")
    assert _reason(tampered, encoded.headers) == "bad_signature"


def test_an_unsigned_record_is_refused_when_signatures_are_required() -> None:
    encoded = EventCodec().encode(SubjectBlocked(issuer="idp", sub="alice"))
    assert encoded.headers == ()
    assert _reason(encoded.value) == "unsigned"


def test_a_record_signed_with_an_unknown_key_is_refused() -> None:
    other = SigningKey.hmac("k2", os.urandom(32))
    encoded = EventCodec(signer=EventSigner(other)).encode(SubjectBlocked(issuer="i", sub="a"))
    assert _reason(encoded.value, encoded.headers) == "unknown_key"


def test_a_record_signed_with_the_right_kid_but_another_secret_is_refused() -> None:
    impostor = SigningKey.hmac("k1", os.urandom(32))
    encoded = EventCodec(signer=EventSigner(impostor)).encode(SubjectBlocked(issuer="i", sub="a"))
    assert _reason(encoded.value, encoded.headers) == "bad_signature"


def test_alg_confusion_hmac_with_the_ed25519_public_key_bytes_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    ed = SigningKey.ed25519("ed1", private)
    public_raw = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    forger = SigningKey.hmac("ed1", public_raw)  # what an attacker who has the public key can do
    verifying = EventCodec(verifier=EventVerifier([ed.verification_key()]))
    forged = EventCodec(signer=EventSigner(forger)).encode(SubjectBlocked(issuer="i", sub="a"))
    with pytest.raises(MalformedEventError) as info:
        verifying.decode(forged.value, forged.headers)
    assert info.value.reason == "bad_signature"
    genuine = EventCodec(signer=EventSigner(ed)).encode(SubjectBlocked(issuer="i", sub="a"))
    assert verifying.decode(genuine.value, genuine.headers).sub == "a"  # type: ignore[union-attr]


def test_a_key_id_in_the_body_that_differs_from_the_signature_is_refused() -> None:
    body = json.loads(codec().encode(SubjectBlocked(issuer="i", sub="a")).value)
    body["key_id"] = "someone-else"
    assert _reason(*_signed(body)) == "bad_signature"


@pytest.mark.parametrize(
    "header", [b"garbage", b"k1.HS256.!!!", b"\xff\xfe", b"k1.RS256.AAAA", b"k1.HS256."]
)
def test_malformed_signature_headers_are_refused(header: bytes) -> None:
    encoded = codec().encode(SubjectBlocked(issuer="i", sub="a"))
    assert _reason(encoded.value, ((SIGNATURE_HEADER, header),)) in {"bad_signature"}


def test_a_tombstone_is_not_an_event() -> None:
    assert _reason(None) == "invalid"


def test_an_oversized_record_is_refused_before_parsing() -> None:
    assert _reason(b"{" + b" " * DEFAULT_MAX_EVENT_BYTES + b"}") == "oversized"


@pytest.mark.parametrize("value", [b"not json", b"\xff\xfe\x00", b'{"v":1,', b""])
def test_bytes_that_are_not_json_are_refused_as_not_json(value: bytes) -> None:
    assert _reason(*_signed_raw(value)) == "not_json"


def _signed_raw(value: bytes) -> tuple[bytes, tuple[tuple[str, bytes], ...]]:
    return value, (EventSigner(KEY).header(value),)


@pytest.mark.parametrize("value", [b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000])
def test_json_nested_too_deeply_is_refused_as_invalid_not_a_recursion_error(value: bytes) -> None:
    # Under the size bound, and a RecursionError from the classifier's json.loads used to
    # escape every consumer (the SDK's sink, the streams worker, revocast replay).
    codec = EventCodec(require_signature=False, max_event_bytes=32 * 1024)
    with pytest.raises(MalformedEventError) as info:
        codec.decode(value)
    assert info.value.reason == "invalid"


def test_an_unknown_event_type_is_refused_as_unknown_type() -> None:
    body = json.loads(codec().encode(SubjectBlocked(issuer="i", sub="a")).value)
    body["type"] = "subject.teleported"
    assert _reason(*_signed(body)) == "unknown_type"


def test_a_newer_schema_version_is_refused_as_newer_schema() -> None:
    body = json.loads(codec().encode(SubjectBlocked(issuer="i", sub="a")).value)
    body["v"] = 2
    assert _reason(*_signed(body)) == "newer_schema"


@pytest.mark.parametrize(
    "change",
    [
        {"sub": 42},
        {"sub": None},
        {"occurred_at": "yesterday"},
        {"id": "not-a-uuid"},
        {"v": "1"},
    ],
)
def test_wrong_types_are_refused_as_invalid(change: dict[str, object]) -> None:
    body = json.loads(codec().encode(SubjectBlocked(issuer="i", sub="a")).value)
    body.update(change)
    assert _reason(*_signed(body)) == "invalid"


def test_a_json_array_is_refused_as_invalid() -> None:
    assert _reason(*_signed([1, 2])) == "invalid"


def test_unsigned_records_are_accepted_only_when_explicitly_allowed() -> None:
    lenient = EventCodec(require_signature=False)
    encoded = lenient.encode(SubjectBlocked(issuer="idp", sub="a"))
    assert lenient.decode(encoded.value, encoded.headers).sub == "a"  # type: ignore[union-attr]


def test_a_lenient_codec_with_keys_still_refuses_a_bad_signature() -> None:
    lenient = EventCodec(verifier=EventVerifier([KEY.verification_key()]), require_signature=False)
    encoded = codec().encode(SubjectBlocked(issuer="idp", sub="a"))
    tampered = encoded.value.replace(b'"a"', b'"b"')
    with pytest.raises(MalformedEventError) as info:
        lenient.decode(tampered, encoded.headers)
    assert info.value.reason == "bad_signature"


@pytest.mark.parametrize("missing", ["id", "occurred_at"])
def test_a_signed_record_without_its_id_or_time_is_refused_as_invalid(missing: str) -> None:
    # Decoding used to fill them in with a random id and the decoding host's clock: every
    # consumer (and every replay) then saw another id and order, so an unblock without
    # occurred_at could win over a later block after a restart.
    body = json.loads(SubjectBlocked(issuer="idp", sub="alice").model_dump_json())
    del body[missing]
    value = json.dumps(body).encode()
    with pytest.raises(MalformedEventError, match=missing) as info:
        codec().decode(value, [_header(value)])
    assert info.value.reason == "invalid"


def _header(value: bytes) -> tuple[str, bytes]:
    return EventSigner(KEY).header(value)


@pytest.mark.parametrize("seconds", [-59, -1, 1, 30, 5 * 3600 + 30 * 60 + 15])
def test_a_time_with_a_sub_minute_utc_offset_is_sent_as_the_same_instant(seconds: int) -> None:
    # pydantic writes an offset in whole minutes and drops the seconds: -00:00:59 went out as
    # -00:00, 59 s earlier, so a watermark or a token's exp reached consumers that much early.
    tz = timezone(timedelta(seconds=seconds))
    moment = datetime(2030, 1, 1, 12, tzinfo=tz)
    events = [
        TokenRevoked(issuer="i", jti="j", expires_at=moment, occurred_at=moment),
        SubjectTokensRevoked(issuer="i", sub="s", issued_before=moment, expires_at=moment),
    ]
    c = codec()
    for event in events:
        encoded = c.encode(event)
        decoded = c.decode(encoded.value, encoded.headers)
        for name in ("occurred_at", "expires_at", "issued_before"):
            if hasattr(event, name):
                assert getattr(decoded, name) == getattr(event, name), name


def test_a_time_with_a_whole_minute_offset_keeps_its_offset_on_the_wire() -> None:
    moment = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=5, minutes=30)))
    value = codec().encode(TokenRevoked(issuer="i", jti="j", expires_at=moment)).value
    assert json.loads(value)["expires_at"] == "2030-01-01T12:00:00+05:30"
