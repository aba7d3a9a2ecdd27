"""Token verification: attacks on the JWT layer are refused before the revocation check."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from unittest.mock import patch

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from consumer_sdk import ConsumerSettings, Revocast, RevocastTokenError, StateUnavailableError
from consumer_sdk._verify import _HEADER_KIDS_MAX, TokenVerifier, header_kid
from consumer_sdk.testing import InMemorySource
from revocation_events import SettingsError
from tests.consumer_sdk._helpers import ISSUER, SECRET, settings, token

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)


def verifier(**overrides: Any) -> TokenVerifier:
    return TokenVerifier(settings(**overrides))


@pytest.fixture
def ready() -> Iterator[Revocast]:
    src = InMemorySource()
    rc = Revocast(settings(issuer=ISSUER, audience=("api",)), source=src)
    src.set_ready()
    yield rc
    rc.close()


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_token_returns_its_claims_and_kid() -> None:
    claims, kid = verifier().decode(token(jti="abc"))
    assert claims["jti"] == "abc"
    assert kid == "k1"


def test_alg_none_token_is_refused() -> None:
    now = int(time.time())
    unsigned = f"{_b64({'alg': 'none', 'kid': 'k1'})}.{_b64({'iat': now, 'exp': now + 60})}."
    with pytest.raises(jwt.InvalidAlgorithmError):
        verifier().decode(unsigned)


def test_settings_refuse_alg_none() -> None:
    with pytest.raises(SettingsError, match="none"):
        settings(algorithms=("HS256", "none"))


def test_hs256_token_signed_with_the_rsa_public_key_is_refused_alg_confusion() -> None:
    forged = jwt.api_jws.PyJWS()
    now = int(time.time())
    payload = json.dumps({"sub": "mallory", "iat": now, "exp": now + 60}).encode()
    # Sign with HMAC over the public PEM, as in CVE-2015-9235-style confusion attacks.
    from jwt.algorithms import HMACAlgorithm

    signing_input = f"{_b64({'alg': 'HS256', 'typ': 'JWT', 'kid': 'rsa'})}.".encode()
    signing_input += base64.urlsafe_b64encode(payload).rstrip(b"=")
    sig = HMACAlgorithm(HMACAlgorithm.SHA256).sign(signing_input, RSA_PEM.encode())
    forged_token = (
        signing_input.decode() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    )
    del forged
    v = verifier(algorithms=("RS256", "HS256"), jwt_keys={"rsa": RSA_PEM, "k1": SECRET})
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(forged_token)


def test_rs256_token_for_an_hmac_key_is_refused() -> None:
    rs = token(key=RSA_KEY, algorithm="RS256", kid="k1")
    v = verifier(algorithms=("RS256", "HS256"), jwt_keys={"k1": SECRET, "rsa": RSA_PEM})
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(rs)


def test_rs256_token_verifies_with_its_pem_key_selected_by_kid() -> None:
    v = verifier(algorithms=("RS256", "HS256"), jwt_keys={"k1": SECRET, "rsa": RSA_PEM})
    claims, kid = v.decode(token(key=RSA_KEY, algorithm="RS256", kid="rsa", jti="r"))
    assert (claims["jti"], kid) == ("r", "rsa")


def test_jwk_json_key_is_accepted() -> None:
    jwk = jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key())
    v = verifier(algorithms=("RS256",), jwt_keys={"j": jwk})
    claims, _ = v.decode(token(key=RSA_KEY, algorithm="RS256", kid="j", jti="x"))
    assert claims["jti"] == "x"


@pytest.mark.parametrize(
    "jwk",
    [
        {"kty": "oct", "k": "c3VwZXJzZWNyZXQ", "alg": "HS257"},  # unknown alg
        {"kty": "oct", "k": "c3VwZXJzZWNyZXQ", "alg": "RS256"},  # alg of another family
        {"kty": "oct", "alg": "HS256", "x": "c3VwZXJzZWNyZXQ"},  # no "k"
        {"kty": "RSA", "n": "c3VwZXJzZWNyZXQ", "e": "!", "alg": "RS256"},  # bad "e"
    ],
)
def test_bad_jwk_is_a_settings_error_that_never_echoes_the_key(jwk: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match="not a valid JWK") as info:
        verifier(algorithms=("HS256", "RS256"), jwt_keys={"j": json.dumps(jwk)})
    assert "c3VwZXJzZWNyZXQ" not in str(info.value)


def test_key_that_fits_no_pinned_algorithm_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="none of the pinned"):
        verifier(algorithms=("HS256",), jwt_keys={"rsa": RSA_PEM})


def test_private_pem_is_refused_as_a_verification_key() -> None:
    private = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SettingsError, match="public key"):
        verifier(algorithms=("RS256",), jwt_keys={"rsa": private})


def test_unknown_kid_is_refused_when_several_keys_are_configured() -> None:
    v = verifier(jwt_keys={"k1": SECRET, "k2": b"t" * 32})
    with pytest.raises(RevocastTokenError, match="unknown key id"):
        v.decode(token(kid="k9"))
    with pytest.raises(RevocastTokenError, match="no kid"):
        v.decode(token(kid=None))


def test_numeric_string_exp_is_refused() -> None:
    now = int(time.time())
    with pytest.raises(RevocastTokenError, match="'exp' must be a number"):
        verifier().decode(token(exp=str(now + 600)))


def test_numeric_string_iat_is_refused() -> None:
    with pytest.raises(RevocastTokenError, match="'iat' must be a number"):
        verifier().decode(token(iat=str(int(time.time()))))


@pytest.mark.parametrize(
    ("claim", "value"),
    [("iat", True), ("iat", False), ("nbf", "0"), ("nbf", True)],
)
def test_boolean_or_string_time_claim_is_refused(claim: str, value: Any) -> None:
    with pytest.raises(RevocastTokenError, match=f"'{claim}' must be a number"):
        verifier().decode(token(**{claim: value}))


def test_float_time_claims_are_accepted() -> None:
    now = time.time()
    claims, _ = verifier().decode(token(iat=now - 1.5, nbf=now - 1.5, exp=now + 600.5))
    assert type(claims["exp"]) is float


@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_missing_required_claim_is_refused(claim: str) -> None:
    with pytest.raises(jwt.MissingRequiredClaimError):
        verifier().decode(token(**{claim: None}))  # type: ignore[arg-type]


def test_missing_sub_is_refused_when_required() -> None:
    with pytest.raises(jwt.MissingRequiredClaimError):
        verifier(require_sub=True).decode(token(sub=None))
    assert verifier().decode(token(sub=None))[0].get("sub") is None


def test_oversized_token_is_refused_before_decoding() -> None:
    big = token(pad="x" * 9000)
    with pytest.raises(RevocastTokenError, match="exceeds 8192"):
        verifier().decode(big)
    assert verifier(max_token_bytes=16_000).decode(big)[0]["pad"]


def test_expired_token_raises_pyjwts_own_error() -> None:
    with pytest.raises(jwt.ExpiredSignatureError):
        verifier().decode(token(at=time.time() - 700, lifetime=600))


def test_leeway_accepts_a_just_expired_token() -> None:
    old = token(at=time.time() - 620, lifetime=600)
    assert verifier(leeway=60).decode(old)


def test_leeway_above_five_minutes_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="leeway"):
        settings(leeway=301)


def test_wrong_issuer_is_refused(ready: Revocast) -> None:
    with pytest.raises(jwt.InvalidIssuerError):
        ready.verify(token(iss="https://evil.example", aud="api"))


def test_wrong_audience_is_refused(ready: Revocast) -> None:
    with pytest.raises(jwt.InvalidAudienceError):
        ready.verify(token(iss=ISSUER, aud="other"))
    assert ready.verify(token(iss=ISSUER, aud="api"))["aud"] == "api"


def test_bad_signature_is_refused() -> None:
    with pytest.raises(jwt.InvalidSignatureError):
        verifier().decode(token(key=b"z" * 32))


def test_header_kid_parses_the_header_without_verifying() -> None:
    assert header_kid(token(kid="abc").encode()) == "abc"
    assert header_kid(token(kid=None).encode()) is None
    with pytest.raises(jwt.DecodeError):
        header_kid(b"garbage")


def test_deeply_nested_header_is_refused_as_an_invalid_token_with_several_keys() -> None:
    # json.loads raises RecursionError (not a ValueError) for ~1,000 nested arrays: it
    # escaped verify as a 500 wherever the kid selects the key. 8 KB tokens fit 6,000.
    nested = base64.urlsafe_b64encode(b"[" * 3000).rstrip(b"=").decode()
    v = verifier(jwt_keys={"k1": SECRET, "k2": b"t" * 32})
    with pytest.raises(jwt.DecodeError):
        v.decode(f"{nested}.e30.AA")


def test_settings_need_exactly_one_key_source() -> None:
    with pytest.raises(SettingsError, match="exactly one"):
        ConsumerSettings(algorithms=("HS256",), allow_unsigned_events=True)
    with pytest.raises(SettingsError, match="exactly one"):
        ConsumerSettings(
            algorithms=("HS256",),
            jwt_keys={"k": SECRET},
            jwks_url="https://idp/jwks",
            allow_unsigned_events=True,
        )


P256 = ec.generate_private_key(ec.SECP256R1())
P384 = ec.generate_private_key(ec.SECP384R1())


def _pem(key: ec.EllipticCurvePrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.mark.parametrize("alg", ["ES384", "ES512", "ES256K"])
def test_ec_algorithm_of_another_curve_is_refused_as_an_invalid_token(alg: str) -> None:
    # PyJWT raises InvalidKeyError (not an InvalidTokenError) for a P-256 key under ES384:
    # any client could turn a made-up header into a 500 in every adapter.
    pinned = ("ES256", "ES384", "ES512", "ES256K")
    v = verifier(algorithms=pinned, jwt_keys={"p256": _pem(P256), "p384": _pem(P384)})
    now = int(time.time())
    forged = f"{_b64({'alg': alg, 'kid': 'p256'})}.{_b64({'iat': now, 'exp': now + 60})}.AAAA"
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(forged)
    assert v.decode(token(key=P256, algorithm="ES256", kid="p256", jti="a"))[0]["jti"] == "a"
    assert v.decode(token(key=P384, algorithm="ES384", kid="p384", jti="b"))[0]["jti"] == "b"


def test_ec_algorithm_of_another_curve_from_jwks_is_refused_as_an_invalid_token() -> None:
    s = settings(algorithms=("ES256", "ES384"), jwt_keys={}, jwks_url="https://idp.example/jwks")
    v = TokenVerifier(s)
    assert v.jwks is not None
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(P256.public_key()))
    with patch.object(
        v.jwks._client, "fetch_data", return_value={"keys": [{**jwk, "kid": "p256"}]}
    ):
        v.jwks.refresh()
    now = int(time.time())
    forged = f"{_b64({'alg': 'ES384', 'kid': 'p256'})}.{_b64({'iat': now, 'exp': now + 60})}.AA"
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(forged)
    assert v.decode(token(key=P256, algorithm="ES256", kid="p256", jti="a"))[0]["jti"] == "a"


@pytest.mark.parametrize(
    "secret", [b"", b'{"kty": "oct", "k": "c2VjcmV0"}', b"ssh-rsa AAAAB3NzaC1yc2E= me@host"]
)
def test_unusable_hmac_secret_is_a_settings_error_not_a_500_on_every_request(
    secret: bytes,
) -> None:
    with pytest.raises(SettingsError, match="none of the pinned algorithms"):
        verifier(jwt_keys={"k1": secret})


def _rsa_jwk(**members: Any) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))
    return {**jwk, **members}


def test_a_jwk_that_declares_its_algorithm_verifies_that_one_only() -> None:
    # RFC 8725 3.1: one key, one algorithm. Pinning RS256 and RS512 must not let an RS512 key
    # verify RS256 tokens (or the reverse).
    jwk = json.dumps(_rsa_jwk(alg="RS512"))
    v = verifier(algorithms=("RS256", "RS512"), jwt_keys={"j": jwk})
    assert v.decode(token(key=RSA_KEY, algorithm="RS512", kid="j", jti="a"))[0]["jti"] == "a"
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(token(key=RSA_KEY, algorithm="RS256", kid="j"))
    with pytest.raises(SettingsError, match="for RS512 only"):
        verifier(algorithms=("RS256",), jwt_keys={"j": jwk})


def test_a_jwk_for_encryption_is_refused_as_a_verification_key() -> None:
    with pytest.raises(SettingsError, match="use is not 'sig'"):
        verifier(algorithms=("RS256",), jwt_keys={"j": json.dumps(_rsa_jwk(use="enc"))})


def test_jwks_keys_for_encryption_or_another_algorithm_are_not_used_to_verify() -> None:
    s = settings(algorithms=("RS256", "RS512"), jwt_keys={}, jwks_url="https://idp.example/jwks")
    v = TokenVerifier(s)
    assert v.jwks is not None
    listed = [
        _rsa_jwk(kid="enc", use="enc"),
        _rsa_jwk(kid="rs512", alg="RS512"),
        _rsa_jwk(kid="sig", use="sig"),
        {"kid": "broken", "kty": "RSA"},  # unusable: skipped, the others still load
        "not a JWK",
    ]
    with patch.object(v.jwks._client, "fetch_data", return_value={"keys": listed}):
        v.jwks.refresh()
    assert sorted(v.jwks.keys) == ["rs512", "sig"]
    assert v.jwks.keys["rs512"][1] == ["RS512"]
    with pytest.raises(RevocastTokenError, match="unknown key id"):
        v.decode(token(key=RSA_KEY, algorithm="RS256", kid="enc"))
    with pytest.raises(jwt.InvalidAlgorithmError):
        v.decode(token(key=RSA_KEY, algorithm="RS256", kid="rs512"))
    assert v.decode(token(key=RSA_KEY, algorithm="RS256", kid="sig", jti="b"))[0]["jti"] == "b"


def test_a_header_segment_is_parsed_once_and_still_selects_its_key_every_time() -> None:
    other = b"t" * 32
    v = verifier(jwt_keys={"k1": SECRET, "k2": other})
    tokens = [token(kid="k1", jti="a"), token(key=other, kid="k2", jti="b")] * 3
    with patch("consumer_sdk._verify.header_kid", wraps=header_kid) as parse:
        seen = [v.decode(t) for t in tokens]
        assert parse.call_count == 2, "one parse per distinct header segment"
        assert [(c["jti"], kid) for c, kid in seen] == [("a", "k1"), ("b", "k2")] * 3
        # A remembered header naming k1 still verifies with k1 only, and an unknown kid is
        # refused every time without being remembered.
        with pytest.raises(jwt.InvalidSignatureError):
            v.decode(token(key=other, kid="k1"))
        for _ in range(2):
            with pytest.raises(RevocastTokenError, match="unknown key id"):
                v.decode(token(kid="k9"))
    assert sorted(v._header_kids.values()) == ["k1", "k2"]


def test_remembered_header_segments_are_bounded() -> None:
    v = verifier(jwt_keys={"k1": SECRET, "k2": b"t" * 32})
    now = int(time.time())
    payload = {"sub": "alice", "iat": now, "exp": now + 60}
    for n in range(_HEADER_KIDS_MAX + 10):  # distinct headers naming a known kid
        v.decode(jwt.encode(payload, SECRET, algorithm="HS256", headers={"kid": "k1", "n": n}))
        assert len(v._header_kids) <= _HEADER_KIDS_MAX
    assert v.decode(token(kid="k1", jti="after"))[0]["jti"] == "after"


def test_a_remembered_header_is_refused_once_its_jwks_key_is_removed() -> None:
    s = settings(jwt_keys={}, jwks_url="https://idp.example/jwks")
    v = TokenVerifier(s)
    assert v.jwks is not None
    jwk = {**json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(SECRET)), "kid": "k1"}
    with patch.object(v.jwks._client, "fetch_data", return_value={"keys": [jwk]}):
        v.jwks.refresh()
    assert v.decode(token(kid="k1"))[1] == "k1"
    other = {**json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(b"t" * 32)), "kid": "k2"}
    with patch.object(v.jwks._client, "fetch_data", return_value={"keys": [other]}):
        v.jwks.refresh()
    with pytest.raises(RevocastTokenError, match="unknown key id"):
        v.decode(token(kid="k1"))


def test_an_unknown_kid_before_the_jwks_first_loads_is_state_unavailable_then_invalid() -> None:
    # Refused either way; but before the key set ever loaded (start-up, the IdP down) we
    # cannot tell a valid token from a forged one: 503 (retry), not 401 (drop the token).
    s = settings(jwt_keys={}, jwks_url="https://idp.example/jwks")
    v = TokenVerifier(s)
    assert v.jwks is not None
    with pytest.raises(StateUnavailableError, match="signing keys not loaded"):
        v.decode(token(kid="k1"))
    other = {**json.loads(jwt.algorithms.HMACAlgorithm.to_jwk(b"t" * 32)), "kid": "k2"}
    with patch.object(v.jwks._client, "fetch_data", return_value={"keys": [other]}):
        v.jwks.refresh()
    with pytest.raises(RevocastTokenError, match="unknown key id") as refused:
        v.decode(token(kid="k1"))
    assert not isinstance(refused.value, StateUnavailableError)
