from __future__ import annotations

import base64
import binascii
import hmac
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from revocation_events import (
    EventCodec,
    EventSigner,
    EventVerifier,
    KeySpecError,
    MalformedEventError,
    SigningKey,
    SubjectUnblocked,
    VerificationKey,
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
        ("clé:hmac:" + "A" * 43, "key id"),  # a header is ASCII: it could never be signed
        ("k\x00:hmac:" + "A" * 43, "key id"),
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


# -- the fast verifier decides exactly as the original one ----------------------------------


def _reference_verify(keys: dict[str, VerificationKey], value: bytes, header: bytes) -> str:
    """The original ``EventVerifier.verify``: ASCII text, ``split('.', 2)``, strict base64url,
    then kid lookup, pinned algorithm and ``VerificationKey.verify``. Returns the kid or the
    skip reason."""
    try:
        kid, alg, sig_text = header.decode("ascii").split(".", 2)
        padded = sig_text + "=" * (-len(sig_text) % 4)
        signature = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        return "bad_signature"
    key = keys.get(kid)
    if key is None:
        return "unknown_key"
    if alg != key.algorithm or not key.verify(value, signature):
        return "bad_signature"
    return kid


def _fast_verify(verifier: EventVerifier, value: bytes, header: bytes) -> str:
    try:
        return verifier.verify(value, header)
    except MalformedEventError as exc:
        return exc.reason


_HMAC_KEYS = [
    SigningKey.hmac("short", b"s" * 32),
    SigningKey.hmac("block", b"b" * 64),  # exactly one SHA-256 block
    SigningKey.hmac("long", os.urandom(100)),  # longer than a block: hashed first
]
_ED_KEY = SigningKey.ed25519("ed", Ed25519PrivateKey.generate())
_ALL = [*_HMAC_KEYS, _ED_KEY]
_VKEYS = {k.kid: k.verification_key() for k in _ALL}
_VERIFIER = EventVerifier(_VKEYS.values())


@pytest.mark.parametrize("key", _ALL, ids=lambda k: k.kid)
@pytest.mark.parametrize("size", [0, 1, 63, 64, 65, 230, 5000])
def test_the_fast_verifier_accepts_what_each_key_signed(key: SigningKey, size: int) -> None:
    value = os.urandom(size)
    header = key.sign(value)
    assert (
        _fast_verify(_VERIFIER, value, header)
        == key.kid
        == _reference_verify(_VKEYS, value, header)
    )
    assert hmac.compare_digest(header, key.sign(value))


def _variants(value: bytes, header: bytes) -> list[bytes]:
    kid, alg, sig = header.split(b".", 2)
    return [
        header,
        header + b"=",
        header + b"==",
        header + b"===",
        header + b"A",
        header[:-1],
        header[:-2],
        kid + b"." + alg + b"." + sig.replace(b"-", b"+").replace(b"_", b"/"),
        kid + b"." + alg + b"." + sig + b"\n",
        kid + b"." + alg + b". " + sig,
        kid + b"." + alg + b"." + sig[:10] + b"=" + sig[10:],
        kid + b"." + alg + b".=" + sig,
        kid + b".HS256." + sig,
        kid + b".EdDSA." + sig,
        kid + b".hs256." + sig,
        b"nobody." + alg + b"." + sig,
        b"nobody." + alg + b".!!!",
        b"." + alg + b"." + sig,
        kid + b"." + alg,
        kid + b"." + alg + b".",
        kid + b"." + alg + b"." + sig + b".x",
        kid + b"\xc3\xa9." + alg + b"." + sig,
        kid + b"." + alg + b"." + sig + b"\xff",
        b"",
        b"..",
        b"...",
    ]


@pytest.mark.parametrize("key", _ALL, ids=lambda k: k.kid)
def test_the_fast_verifier_refuses_every_altered_header_for_the_same_reason(
    key: SigningKey,
) -> None:
    value = b'{"v":1,"type":"subject.blocked","sub":"a","issuer":"i"}'
    for header in _variants(value, key.sign(value)):
        assert _fast_verify(_VERIFIER, value, header) == _reference_verify(_VKEYS, value, header), (
            header
        )
        assert _fast_verify(_VERIFIER, value + b" ", header) == _reference_verify(
            _VKEYS, value + b" ", header
        ), header


@hsettings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_ALL),
    st.binary(max_size=300),
    st.one_of(
        st.binary(max_size=120),
        st.text(
            alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_+/=.\n "
        ).map(str.encode),
    ),
)
def test_the_fast_verifier_agrees_with_the_original_on_any_header(
    key: SigningKey, value: bytes, noise: bytes
) -> None:
    kid = key.kid.encode()
    for header in (noise, kid + b"." + noise, kid + b"." + key.algorithm.encode() + b"." + noise):
        assert _fast_verify(_VERIFIER, value, header) == _reference_verify(_VKEYS, value, header)


def test_a_non_ascii_key_id_is_refused_and_a_non_ascii_header_never_verifies() -> None:
    with pytest.raises(KeySpecError, match="key id"):
        SigningKey.hmac("clé", b"c" * 32)
    with pytest.raises(KeySpecError, match="key id"):
        VerificationKey.hmac("clé", b"c" * 32)
    value = b"{}"
    mac = hmac.digest(b"c" * 32, value, "sha256")
    header = "clé.HS256.".encode() + base64.urlsafe_b64encode(mac).rstrip(b"=")
    assert _fast_verify(_VERIFIER, value, header) == "bad_signature"
    assert _reference_verify(_VKEYS, value, header) == "bad_signature"


def test_a_huge_unknown_key_id_is_not_copied_whole_into_the_skip_message() -> None:
    # Record headers are not bounded by max_event_bytes: a ~1 MB kid would be logged in full
    # by every consumer for every such record.
    header = b"k" * 500_000 + b".HS256.AAAA"
    with pytest.raises(MalformedEventError) as info:
        _VERIFIER.verify(b"{}", header)
    assert info.value.reason == "unknown_key"
    assert len(str(info.value)) < 200
