"""Garbage in ``Revocast.verify()`` is refused with a :class:`jwt.InvalidTokenError`, never
anything else: a web framework answers any other exception with a 500 instead of a 401.

Inputs are random bytes and text, JWT-shaped strings with odd headers and payloads (both
unsigned and correctly signed, so claim handling is reached too), and values of the wrong
type. Every SDK configuration whose code path differs is tried: one key (no ``kid`` lookup),
several keys, the verify cache, and audience/issuer/leeway."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import jwt
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from consumer_sdk import Revocast
from consumer_sdk.testing import InMemorySource
from tests.consumer_sdk._helpers import SECRET, settings, token

CONFIGS: dict[str, dict[str, Any]] = {
    "one_key": {},
    "several_keys": {"jwt_keys": {"k1": SECRET, "k2": b"t" * 32}},
    "verify_cache": {"verify_cache_size": 64},
    "audience_issuer_leeway": {"audience": ("api",), "issuer": "idp", "leeway": 5.0},
}


@cache
def client(name: str) -> Revocast:
    src = InMemorySource()
    rc = Revocast(settings(**CONFIGS[name]), source=src)
    src.set_ready()
    return rc


@pytest.fixture(scope="module", autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    for name in CONFIGS:
        client(name).close()
    client.cache_clear()


def refused_cleanly(name: str, value: Any) -> None:
    """``verify(value)`` either returns claims or raises an InvalidTokenError (twice, so a
    verify-cache hit is exercised as well as the miss)."""
    rc = client(name)
    for _ in range(2):
        with contextlib.suppress(jwt.InvalidTokenError):
            rc.verify(value)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed(header: bytes, payload: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(payload)}"
    mac = hmac.digest(SECRET, signing_input.encode(), hashlib.sha256)
    return f"{signing_input}.{b64(mac)}"


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)
HEADER = st.fixed_dictionaries(
    {},
    optional={
        "alg": st.sampled_from(["HS256", "none", "RS256", ""]) | JSON,
        "kid": st.sampled_from(["k1", "k2", "\x00", "x" * 300]) | JSON,
        "typ": JSON,
        "crit": JSON,
        "b64": JSON,
        "jku": JSON,
    },
)
PAYLOAD = st.fixed_dictionaries(
    {},
    optional={
        name: st.sampled_from([0, 2**31, 2**64, 1e400, -1e400, "1", True]) | JSON
        for name in ("exp", "iat", "nbf", "aud", "iss", "sub", "jti", "sid", "ver")
    },
)


def dumps(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


SEGMENT = st.builds(dumps, JSON) | st.binary(max_size=40)
JWT_SHAPED = (
    st.builds(signed, st.builds(dumps, HEADER), st.builds(dumps, PAYLOAD))
    | st.builds(signed, SEGMENT, SEGMENT)
    | st.builds(lambda h, p, s: f"{b64(h)}.{b64(p)}.{s}", SEGMENT, SEGMENT, st.text(max_size=8))
)
ANY_TOKEN = (
    st.binary(max_size=200)
    | st.text(max_size=200)
    | JWT_SHAPED
    | st.builds(str.encode, JWT_SHAPED)
    | st.lists(st.sampled_from([".", "a", "\x00", "\udcff", "é", "=", "+/"])).map("".join)
)
FUZZ = hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("name", CONFIGS)
def test_a_well_formed_token_is_accepted_in_every_configuration(name: str) -> None:
    extra: dict[str, Any] = {"aud": "api", "iss": "idp"} if "audience" in CONFIGS[name] else {}
    assert client(name).verify(token(**extra))["sub"] == "alice"


@pytest.mark.parametrize("name", CONFIGS)
@FUZZ
@given(value=ANY_TOKEN)
def test_random_input_is_refused_with_an_invalid_token_error(name: str, value: Any) -> None:
    refused_cleanly(name, value)


WRONG_TYPES: dict[str, Any] = {
    "none": None,
    "int": 123,
    "float": 1.5,
    "bool": True,
    "bytearray": bytearray(token().encode()),
    "memoryview": memoryview(token().encode()),
    "list": [token()],
    "dict": {"token": token()},
}
EDGE_VALUES: dict[str, Any] = {
    "empty_str": "",
    "empty_bytes": b"",
    "nul_bytes": "\x00" * 64,
    "nul_in_token": token().replace(".", "\x00.", 1),
    "lone_surrogate": "\udcff." + token(),
    "non_utf8_bytes": b"\xff\xfe." + token().encode(),
    "latin1_bytes": token().encode() + "é".encode("latin-1"),
    "ten_megabytes": "a" * 10_000_000,
    "ten_megabytes_jwt_shaped": token() + "A" * 10_000_000,
    "deeply_nested_header": f"{b64(b'[' * 100_000)}.e30.x",
    "deeply_nested_signed_payload": signed(dumps({"alg": "HS256"}), b'{"a":' * 50_000),
    "huge_exp": signed(dumps({"alg": "HS256", "kid": "k1"}), b'{"exp":1' + b"0" * 5000 + b"}"),
}


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("value", WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_value_of_the_wrong_type_is_refused_with_a_decode_error(name: str, value: Any) -> None:
    with pytest.raises(jwt.DecodeError, match="str or bytes"):
        client(name).verify(value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(
            name,
            value,
            id=f"{label}-{name}",
        )
        for label, value in EDGE_VALUES.items()
        for name in CONFIGS
    ],
)
def test_an_edge_value_is_refused_with_an_invalid_token_error(name: str, value: Any) -> None:
    with pytest.raises(jwt.InvalidTokenError):
        client(name).verify(value)
