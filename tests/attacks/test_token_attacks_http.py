"""The same corpus through the ASGI middleware once, to show the HTTP mapping: a token that
is not even a ``b64token`` is a 400 ``invalid_request``; every other attack a 401
``invalid_token`` with its challenge. The app behind the middleware is never reached."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from consumer_sdk import Revocast
from consumer_sdk.integrations.asgi import RevocastMiddleware
from consumer_sdk.testing import InMemorySource
from tests.attacks._tokens import ATTACKS, attack_settings, good_token
from tests.faults._figures import record_figures

B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    reached: list[str] = []

    async def me(request: Request) -> JSONResponse:
        reached.append(request.state.revocast_claims["sub"])
        return JSONResponse({"sub": request.state.revocast_claims["sub"]})

    src = InMemorySource()
    with Revocast(attack_settings(), source=src) as rc:
        src.set_ready()
        app = Starlette(
            routes=[Route("/me", me)], middleware=[Middleware(RevocastMiddleware, revocast=rc)]
        )
        with TestClient(app) as http:
            yield http


def expected_status(token: str | bytes) -> int:
    text = token if isinstance(token, str) else token.decode("latin-1")
    return 401 if B64TOKEN.fullmatch(text) else 400


def test_well_formed_token_reaches_the_app(client: TestClient) -> None:
    reply = client.get("/me", headers={"authorization": f"Bearer {good_token()}"})
    assert reply.status_code == 200
    assert reply.json() == {"sub": "alice"}


def test_every_attack_is_refused_over_http_with_the_mapped_status(client: TestClient) -> None:
    statuses: dict[str, int] = {}
    for attack in ATTACKS:
        token = attack.build()
        raw = token.encode("latin-1") if isinstance(token, str) else token
        reply = client.get("/me", headers={b"authorization": b"Bearer " + raw})
        statuses[attack.name] = reply.status_code
        assert reply.status_code == expected_status(token), attack.name
        if reply.status_code == 401:
            assert reply.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    accepted = sum(status < 400 for status in statuses.values())
    record_figures("token_attacks_http", attacks_tried=len(statuses), accepted=accepted)
    assert accepted == 0
