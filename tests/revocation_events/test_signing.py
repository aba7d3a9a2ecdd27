from __future__ import annotations

import base64
import os

import pytest

from revocation_events import (
    EventCodec,
    EventSigner,
    EventVerifier,
    KeySpecError,
    SigningKey,
    SubjectUnblocked,
    parse_signing_key,
    parse_verification_keys,
    public_key_spec,
)
from tests.revocation_events.test_models import LATER


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_a_signing_spec_and_its_public_spec_verify_each_other_for_ed25519() -> None:
    signing = parse_signing_key(f"idp-1:ed25519:{_b64(os.urandom(32))}")
    keys = parse_verification_keys(public_key_spec(signing))
    codec = EventCodec(signer=EventSigner(signing), verifier=EventVerifier(keys))
    encoded = codec.encode(SubjectUnblocked(issuer="i", sub="a", expires_at=LATER))
    assert codec.decode(encoded.value, encoded.headers).key_id == "idp-1"


def test_the_public_spec_of_an_ed25519_key_does_not_contain_the_private_seed() -> None:
    seed = os.urandom(32)
    assert _b64(seed) not in public_key_spec(parse_signing_key(f"k:ed25519:{_b64(seed)}"))


def test_key_rotation_accepts_events_signed_by_any_configured_key() -> None:
    old, new = SigningKey.hmac("old", os.urandom(32)), SigningKey.hmac("new", os.urandom(32))
    verifier = EventVerifier([old.verification_key(), new.verification_key()])
    for key in (old, new):
        encoded = EventCodec(signer=EventSigner(key)).encode(
            SubjectUnblocked(issuer="i", sub="a", expires_at=LATER)
        )
        assert (
            EventCodec(verifier=verifier).decode(encoded.value, encoded.headers).key_id == key.kid
        )


def test_key_reprs_never_show_secret_material() -> None:
    secret = os.urandom(32)
    key = SigningKey.hmac("k", secret)
    assert secret.hex() not in repr(key)
    assert _b64(secret) not in repr(key)
    assert "_secret" not in repr(key.verification_key())


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("nocolons", "kid:type:base64url"),
        ("k:rsa:AAAA", "unknown key type"),
        ("k:hmac:c2hvcnQ", "at least 32 bytes"),
        ("k:ed25519:AAAA", "32-byte"),
        ("bad.kid:hmac:" + "A" * 43, "key id"),
        ("k:hmac:***", "base64url"),
    ],
)
def test_bad_signing_specs_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(KeySpecError, match=message):
        parse_signing_key(spec)


def test_bad_spec_errors_do_not_echo_the_key_material() -> None:
    material = _b64(b"x" * 20)
    with pytest.raises(KeySpecError) as info:
        parse_signing_key(f"k:hmac:{material}")
    assert material not in str(info.value)


def test_verification_specs_refuse_duplicates_and_empty_lists() -> None:
    one = f"k:hmac:{_b64(os.urandom(32))}"
    with pytest.raises(KeySpecError, match="duplicate"):
        parse_verification_keys(f"{one},{one}")
    with pytest.raises(KeySpecError, match="no verification key"):
        parse_verification_keys(" , ")
