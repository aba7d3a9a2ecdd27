"""Test doubles for the receiver: an SSF transmitter / OpenID provider that mints tokens with
joserfc (independent of the PyJWT code under test) and serves its metadata, keys and an
RFC 8936 poll endpoint through ``httpx.MockTransport``; and a clock that only moves when told.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

TRANSMITTER = "https://tx.example.com/ssf"
AUDIENCE = "https://revocast.example.com/receiver"
OP = "https://op.example.com"
CLIENT_ID = "revocast-client"
PUSH_TOKEN = "push-token-0123456789abcdef"
START = datetime(2025, 5, 1, 12, 0, 0, tzinfo=UTC)

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"
LOGOUT = "http://schemas.openid.net/event/backchannel-logout"

_RSA_KEY = RSAKey.generate_key(2048, parameters={"kid": "rsa-1"})

Key = RSAKey | ECKey | OKPKey


class HttpResponse(Protocol):
    """What tests read from a response (starlette's TestClient uses httpx or httpx2)."""

    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class FakeClock:
    """Wall clock and monotonic clock in one; advances only through :meth:`advance`."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.mono = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.mono += seconds


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned_jwt(header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes) -> str:
    """A JWT assembled by hand, for attacks no JOSE library will produce."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


@dataclass
class Transmitter:
    """An SSF transmitter and OpenID provider in one (each with its own issuer)."""

    clock: FakeClock
    keys: dict[str, Key] = field(default_factory=dict)
    published_kids: set[str] = field(default_factory=set)
    queue: dict[str, str] = field(default_factory=dict)
    """Poll endpoint: SETs by jti, until acknowledged."""
    poll_requests: list[dict[str, Any]] = field(default_factory=list)
    poll_answers: list[httpx.Response | None] = field(default_factory=list)
    """Canned poll responses served first (e.g. 429); ``None`` serves the queue."""
    polled: threading.Condition = field(default_factory=threading.Condition)
    verification_requests: list[dict[str, Any]] = field(default_factory=list)
    metadata_requests: int = 0
    jwks_requests: int = 0
    down: bool = False

    def __post_init__(self) -> None:
        self.add_key(_RSA_KEY)
        self.add_key(ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
        self.add_key(OKPKey.generate_key("Ed25519", parameters={"kid": "ed-1"}))

    def add_key(self, key: Key, *, publish: bool = True) -> None:
        kid = key.kid
        assert kid is not None
        self.keys[kid] = key
        if publish:
            self.published_kids.add(kid)

    # -- minting -----------------------------------------------------------------------------

    def set(
        self,
        event_type: str,
        payload: Mapping[str, Any] | None = None,
        *,
        sub_id: Mapping[str, Any] | None = None,
        jti: str | None = None,
        kid: str = "ec-1",
        typ: str = "secevent+jwt",
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        body: dict[str, Any] = {
            "iss": TRANSMITTER,
            "aud": AUDIENCE,
            "iat": int(self.clock.now.timestamp()),
            "jti": uuid.uuid4().hex if jti is None else jti,
            "events": {event_type: dict(payload or {})},
        }
        if sub_id is not None:
            body["sub_id"] = dict(sub_id)
        body.update(claims)
        return self.sign({k: v for k, v in body.items() if k not in omit}, kid=kid, typ=typ)

    def logout_token(
        self,
        *,
        kid: str = "ec-1",
        typ: str = "logout+jwt",
        omit: tuple[str, ...] = (),
        **claims: Any,
    ) -> str:
        now = int(self.clock.now.timestamp())
        body: dict[str, Any] = {
            "iss": OP,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 120,
            "jti": uuid.uuid4().hex,
            "events": {LOGOUT: {}},
        }
        body.update(claims)
        return self.sign({k: v for k, v in body.items() if k not in omit}, kid=kid, typ=typ)

    def sign(self, claims: Mapping[str, Any], *, kid: str, typ: str) -> str:
        key = self.keys[kid]
        alg = "RS256" if isinstance(key, RSAKey) else "ES256" if isinstance(key, ECKey) else "EdDSA"
        header = {"alg": alg, "kid": kid, "typ": typ}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # joserfc flags EdDSA as superseded by RFC 9864
            return jwt.encode(header, dict(claims), key, algorithms=[alg])

    # -- HTTP --------------------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.keys[k].as_dict(private=False) for k in sorted(self.published_kids)]}

    def handler(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("transmitter down", request=request)
        path = request.url.path
        if path == "/.well-known/ssf-configuration/ssf":
            self.metadata_requests += 1
            return httpx.Response(
                200,
                json={
                    "issuer": TRANSMITTER,
                    "jwks_uri": "https://tx.example.com/jwks",
                    "verification_endpoint": "https://tx.example.com/ssf/verify",
                    "delivery_methods_supported": ["urn:ietf:rfc:8935", "urn:ietf:rfc:8936"],
                },
            )
        if path == "/.well-known/openid-configuration":
            return httpx.Response(200, json={"issuer": OP, "jwks_uri": f"{OP}/jwks"})
        if path == "/jwks":
            self.jwks_requests += 1
            return httpx.Response(200, json=self.jwks())
        if path == "/ssf/verify":
            self.verification_requests.append(json.loads(request.content))
            return httpx.Response(204)
        if path == "/ssf/poll":
            return self._poll(request)
        return httpx.Response(404)

    def _poll(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        with self.polled:
            self.poll_requests.append(body)
            self.polled.notify_all()
        if request.headers.get("authorization") != "Bearer receiver-token":
            return httpx.Response(401)
        for jti in body.get("ack", []):
            self.queue.pop(jti, None)
        for jti in body.get("setErrs", {}):
            self.queue.pop(jti, None)
        if self.poll_answers and (canned := self.poll_answers.pop(0)) is not None:
            return canned
        limit = body["maxEvents"]
        batch = dict(list(self.queue.items())[:limit])
        return httpx.Response(
            200, json={"sets": batch, "moreAvailable": len(self.queue) > len(batch)}
        )

    def wait_for_polls(self, count: int, timeout: float = 10.0) -> None:
        with self.polled:
            if not self.polled.wait_for(lambda: len(self.poll_requests) >= count, timeout):
                raise AssertionError(f"fewer than {count} poll requests after {timeout}s")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self.handler))
