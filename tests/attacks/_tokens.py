"""The token-attack corpus: each attack builds a token the SDK must refuse, and names the
error it must be refused with. Shared by the ``verify()`` tests and the HTTP mapping test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from consumer_sdk import ConsumerSettings, RevocastTokenError
from tests.consumer_sdk._helpers import event_keys

__all__ = ["ATTACKS", "Attack", "attack_settings", "good_token"]

ISSUER = "https://idp.example"


@dataclass(frozen=True)
class Keys:
    issuer: rsa.RSAPrivateKey
    issuer_public_pem: bytes
    other: rsa.RSAPrivateKey
    ec_issuer: ec.EllipticCurvePrivateKey
    attacker: rsa.RSAPrivateKey


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@cache
def keys() -> Keys:
    main = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Keys(
        issuer=main,
        issuer_public_pem=_pem(main),
        other=rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ec_issuer=ec.generate_private_key(ec.SECP256R1()),
        attacker=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def attack_settings(**overrides: Any) -> ConsumerSettings:
    """Three keys (so the ``kid`` selects one), RS256 and ES256 pinned, an issuer."""
    k = keys()
    values: dict[str, Any] = {
        "algorithms": ("RS256", "ES256"),
        "jwt_keys": {
            "k1": k.issuer_public_pem,
            "k2": _pem(k.other),
            "ec1": _pem(k.ec_issuer),
        },
        "issuer": ISSUER,
        "event_keys": event_keys(),
    }
    values.update(overrides)
    return ConsumerSettings(**values)


def claims(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    values: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "alice",
        "jti": "attack",
        "iat": now,
        "exp": now + 600,
    }
    values.update(extra)
    return {k: v for k, v in values.items() if v is not None}


def good_token(**extra: Any) -> str:
    return jwt.encode(claims(**extra), keys().issuer, algorithm="RS256", headers={"kid": "k1"})


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_json(text: str) -> str:
    """A JSON segment written by hand (to keep duplicate keys, odd types…)."""
    return b64(text.encode())


def segment(obj: dict[str, Any]) -> str:
    return b64(json.dumps(obj).encode())


def resign(header: str, payload: str, key: Any, alg: str) -> str:
    """Sign ``header.payload`` (already encoded) with ``key`` using PyJWT's algorithm."""
    algorithm = jwt.get_algorithm_by_name(alg)
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{b64(algorithm.sign(signing_input, algorithm.prepare_key(key)))}"


def rs256(header: dict[str, Any], payload: dict[str, Any], key: Any = None) -> str:
    return resign(segment(header), segment(payload), key or keys().issuer, "RS256")


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[], str | bytes]
    refused_with: type[jwt.InvalidTokenError]


def _alg_confusion() -> str:
    # PyJWT refuses to HMAC with a PEM key, so sign by hand as an attacker would.
    header, payload = segment({"alg": "HS256", "typ": "JWT", "kid": "k1"}), segment(claims())
    mac = hmac.digest(keys().issuer_public_pem, f"{header}.{payload}".encode(), hashlib.sha256)
    return f"{header}.{payload}.{b64(mac)}"


def _psychic_signature() -> str:
    # CVE-2022-21449: an ECDSA signature of r = s = 0 verified by broken implementations.
    header, payload = segment({"alg": "ES256", "kid": "ec1"}), segment(claims())
    return f"{header}.{payload}.{b64(bytes(64))}"


def _duplicate_header_alg() -> str:
    # Two "alg" members: a parser that kept the first would trust RS256.
    header = raw_json('{"alg":"RS256","kid":"k1","alg":"none"}')
    return f"{header}.{segment(claims())}."


def _duplicate_header_kid() -> str:
    # Signed with k1, but the last "kid" names k2: key selection and PyJWT must agree.
    header = raw_json('{"alg":"RS256","kid":"k1","kid":"k2"}')
    return resign(header, segment(claims()), keys().issuer, "RS256")


def _duplicate_payload_jti() -> str:
    # A revoked jti hidden behind a duplicate appended after signing.
    token = good_token(jti="revoked")
    header, _, signature = token.split(".")
    forged = json.dumps(claims(jti="revoked"))[:-1] + ', "jti": "fresh"}'
    return f"{header}.{b64(forged.encode())}.{signature}"


def _embedded_jwk() -> str:
    # CVE-2018-0114: the token carries the attacker's public key to verify itself with.
    attacker = keys().attacker
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker.public_key()))
    return rs256({"alg": "RS256", "kid": "k1", "jwk": jwk}, claims(), attacker)


def _huge_header() -> str:
    return rs256({"alg": "RS256", "kid": "k1", "x": "A" * 10_000}, claims())


def _signature_stripped() -> str:
    header, payload, _ = good_token().split(".")
    return f"{header}.{payload}"


def _empty_signature() -> str:
    header, payload, _ = good_token().split(".")
    return f"{header}.{payload}."


def _tampered_payload() -> str:
    header, _, signature = good_token().split(".")
    return f"{header}.{segment(claims(sub='admin'))}.{signature}"


def _non_utf8_header() -> str:
    header = b64(b'{"alg":"RS256","kid":"\xff\xfe"}')
    return f"{header}.{segment(claims())}.AAAA"


ATTACKS: tuple[Attack, ...] = (
    Attack(
        "alg_none",
        lambda: f"{segment({'alg': 'none', 'kid': 'k1'})}.{segment(claims())}.",
        jwt.InvalidAlgorithmError,
    ),
    Attack(
        "alg_none_capitalised",
        lambda: f"{segment({'alg': 'NoNe', 'kid': 'k1'})}.{segment(claims())}.",
        jwt.InvalidAlgorithmError,
    ),
    Attack("hs256_signed_with_the_rsa_public_key", _alg_confusion, jwt.InvalidAlgorithmError),
    Attack("ecdsa_psychic_signature_r_s_zero", _psychic_signature, jwt.InvalidSignatureError),
    Attack(
        "unknown_kid",
        lambda: rs256({"alg": "RS256", "kid": "nope"}, claims()),
        RevocastTokenError,
    ),
    Attack(
        "kid_path_traversal",
        lambda: rs256({"alg": "RS256", "kid": "../../../../etc/passwd"}, claims()),
        RevocastTokenError,
    ),
    Attack(
        "kid_sql_injection",
        lambda: rs256({"alg": "RS256", "kid": "k1' OR '1'='1' --"}, claims()),
        RevocastTokenError,
    ),
    Attack(
        "kid_huge",
        lambda: rs256({"alg": "RS256", "kid": "k" * 5000}, claims()),
        RevocastTokenError,
    ),
    Attack(
        "kid_not_a_string",
        lambda: rs256({"alg": "RS256", "kid": ["k1"]}, claims()),
        jwt.DecodeError,
    ),
    Attack(
        "kid_missing_with_several_keys",
        lambda: rs256({"alg": "RS256"}, claims()),
        RevocastTokenError,
    ),
    Attack(
        "kid_of_another_key",
        lambda: rs256({"alg": "RS256", "kid": "k2"}, claims()),
        jwt.InvalidSignatureError,
    ),
    Attack(
        "exp_missing",
        lambda: good_token(exp=None),
        jwt.MissingRequiredClaimError,
    ),
    Attack(
        "iat_missing",
        lambda: good_token(iat=None),
        jwt.MissingRequiredClaimError,
    ),
    Attack(
        "exp_numeric_string",
        lambda: good_token(exp="9999999999"),
        RevocastTokenError,
    ),
    Attack("exp_not_a_number", lambda: good_token(exp="never"), jwt.DecodeError),
    Attack(
        "exp_in_the_past", lambda: good_token(exp=int(time.time()) - 60), jwt.ExpiredSignatureError
    ),
    Attack(
        "nbf_in_the_future",
        lambda: good_token(nbf=int(time.time()) + 3600),
        jwt.ImmatureSignatureError,
    ),
    Attack(
        "iat_in_the_future",
        lambda: good_token(iat=int(time.time()) + 3600),
        jwt.ImmatureSignatureError,
    ),
    Attack("wrong_issuer", lambda: good_token(iss="https://evil.example"), jwt.InvalidIssuerError),
    Attack(
        "oversized_token",
        lambda: good_token(padding="A" * 20_000),
        RevocastTokenError,
    ),
    Attack("oversized_header", _huge_header, RevocastTokenError),
    Attack("duplicate_header_alg_last_none", _duplicate_header_alg, jwt.InvalidAlgorithmError),
    Attack("duplicate_header_kid", _duplicate_header_kid, jwt.InvalidSignatureError),
    Attack(
        "duplicate_payload_jti_added_after_signing",
        _duplicate_payload_jti,
        jwt.InvalidSignatureError,
    ),
    Attack("non_utf8_token_bytes", lambda: b"\xff\xfe\xfd.\x80\x81.\xc3\x28", jwt.DecodeError),
    Attack("non_utf8_header_json", _non_utf8_header, jwt.DecodeError),
    Attack(
        "crit_header_unknown_extension",
        lambda: rs256({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}, claims()),
        jwt.InvalidTokenError,
    ),
    Attack(
        "jku_header_points_at_attacker_keys",
        lambda: rs256(
            {"alg": "RS256", "kid": "k1", "jku": "https://evil.example/jwks.json"},
            claims(),
            keys().attacker,
        ),
        jwt.InvalidSignatureError,
    ),
    Attack(
        "x5u_header_points_at_attacker_cert",
        lambda: rs256(
            {"alg": "RS256", "kid": "k1", "x5u": "https://evil.example/cert.pem"},
            claims(),
            keys().attacker,
        ),
        jwt.InvalidSignatureError,
    ),
    Attack("embedded_jwk_header", _embedded_jwk, jwt.InvalidSignatureError),
    Attack("signature_stripped", _signature_stripped, jwt.DecodeError),
    Attack("empty_signature", _empty_signature, jwt.InvalidSignatureError),
    Attack("payload_tampered_after_signing", _tampered_payload, jwt.InvalidSignatureError),
    Attack("not_a_jwt", lambda: "not-a-token", jwt.DecodeError),
    Attack("empty_token", lambda: "", jwt.DecodeError),
)
