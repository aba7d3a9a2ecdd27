"""The FastAPI dependencies under FastAPI's TestClient.

No ``from __future__ import annotations`` here: FastAPI evaluates route annotations, and
the dependencies are locals of the app factories.
"""

from collections.abc import Iterator
from typing import Annotated, Any

import httpx2
import pytest
from fastapi import Depends, FastAPI, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from consumer_sdk.integrations.asgi import RevocastMiddleware
from consumer_sdk.integrations.fastapi import RevocastBearer, verified_claims
from tests.consumer_sdk.integrations._cases import (
    CASES,
    NOT_PREFLIGHTS,
    ORIGIN,
    PREFLIGHT,
    Case,
    Harness,
    Headers,
    Reply,
    case_ids,
    check,
)

Claims = dict[str, Any]


def dependency_app(harness: Harness) -> FastAPI:
    app = FastAPI()
    bearer = RevocastBearer(harness.revocast)

    @app.get("/me")
    async def me(claims: Annotated[Claims, Depends(bearer)]) -> Claims:
        return {"sub": claims["sub"], "jti": claims["jti"]}

    @app.get("/open")
    async def open_route() -> Claims:
        return {"open": True}

    return app


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(dependency_app(harness)) as client:
        yield client


def to_reply(response: httpx2.Response) -> Reply:
    body = response.json()
    if response.status_code != 200:
        body = body["detail"]  # FastAPI's HTTPException handler wraps the detail
    return Reply(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        body,
        response.content,
    )


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_dependency_answers_every_case(case: Case, harness: Harness, client: TestClient) -> None:
    def send(headers: Headers) -> Reply:
        return to_reply(client.get("/me", headers=headers))

    check(case, harness, send)


def test_dependency_guards_only_the_routes_that_use_it(ready: Harness, client: TestClient) -> None:
    assert client.get("/open").json() == {"open": True}
    assert client.get("/me").status_code == 401


def test_openapi_documents_the_dependency_as_a_bearer_scheme(
    ready: Harness, client: TestClient
) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["RevocastBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
    }
    assert schema["paths"]["/me"]["get"]["security"] == [{"RevocastBearer": []}]
    assert "security" not in schema["paths"]["/open"]["get"]


def middleware_app(harness: Harness) -> FastAPI:
    app = FastAPI()
    app.add_middleware(RevocastMiddleware, revocast=harness.revocast, exempt_paths=("/open",))

    @app.get("/me")
    async def me(claims: Annotated[Claims, Depends(verified_claims)]) -> Claims:
        return {"sub": claims["sub"], "jti": claims["jti"]}

    @app.get("/open")
    async def open_route(claims: Annotated[Claims, Depends(verified_claims)]) -> Claims:
        return claims

    return app


def test_verified_claims_returns_what_the_middleware_verified(ready: Harness) -> None:
    with TestClient(middleware_app(ready)) as client:
        assert client.get("/me", headers=ready.bearer()).json() == {
            "sub": ready.sub,
            "jti": ready.jti,
        }
        assert client.get("/me").status_code == 401


def test_verified_claims_on_an_unverified_request_fails_closed(ready: Harness) -> None:
    with TestClient(middleware_app(ready), raise_server_exceptions=False) as client:
        response = client.get("/open", headers=ready.bearer())
    assert response.status_code == 500


def websocket_app(harness: Harness, *, middleware: bool) -> FastAPI:
    app = FastAPI()
    if middleware:
        app.add_middleware(RevocastMiddleware, revocast=harness.revocast)
    dependency = verified_claims if middleware else RevocastBearer(harness.revocast)
    claims_of = Depends(dependency)

    @app.websocket("/ws")
    async def ws(websocket: WebSocket, claims: Annotated[Claims, claims_of]) -> None:
        await websocket.accept()
        await websocket.send_json({"sub": claims["sub"]})
        await websocket.close()

    return app


@pytest.mark.parametrize("middleware", [False, True], ids=["dependency", "verified_claims"])
def test_websocket_route_gets_the_claims(ready: Harness, middleware: bool) -> None:
    with (
        TestClient(websocket_app(ready, middleware=middleware)) as client,
        client.websocket_connect("/ws", headers=dict(ready.bearer())) as socket,
    ):
        assert socket.receive_json() == {"sub": ready.sub}


@pytest.mark.parametrize(
    ("is_ready", "with_token", "code"),
    [(True, False, 1008), (False, True, 1013)],
    ids=["missing_token", "state_unavailable"],
)
def test_dependency_refuses_a_websocket_handshake_with_a_close_code(
    harness: Harness, is_ready: bool, with_token: bool, code: int
) -> None:
    if is_ready:
        harness.source.set_ready()
    headers = dict(harness.bearer()) if with_token else {}
    with (
        TestClient(websocket_app(harness, middleware=False)) as client,
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws", headers=headers),
    ):
        pytest.fail("the handshake was accepted")
    assert closed.value.code == code


def cors_app(harness: Harness) -> FastAPI:
    """RevocastMiddleware outermost, CORSMiddleware added before it (so inside it)."""
    app = FastAPI()

    @app.get("/me")
    async def me(claims: Annotated[Claims, Depends(verified_claims)]) -> Claims:
        return {"sub": claims["sub"]}

    app.add_middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_headers=["authorization"])
    app.add_middleware(RevocastMiddleware, revocast=harness.revocast, allow_preflight=True)
    return app


def test_cors_preflight_reaches_cors_middleware_added_inside_revocast_middleware(
    ready: Harness,
) -> None:
    with TestClient(cors_app(ready)) as client:
        response = client.options("/me", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("headers", NOT_PREFLIGHTS.values(), ids=NOT_PREFLIGHTS.keys())
def test_options_that_is_not_a_genuine_preflight_is_verified(
    ready: Harness, headers: Headers
) -> None:
    with TestClient(cors_app(ready)) as client:
        assert client.options("/me", headers=headers).status_code == 401


def test_dependency_refuses_a_preflight_rather_than_run_its_handler(ready: Harness) -> None:
    # A dependency cannot pass a request on without running its route's handler, which would
    # then run without a token.
    app = FastAPI()
    bearer = RevocastBearer(ready.revocast)
    ran: list[str] = []

    @app.api_route("/own-options", methods=["GET", "OPTIONS"])
    async def own_options(claims: Annotated[Claims, Depends(bearer)]) -> Claims:
        ran.append("own-options")
        return {"sub": claims["sub"]}

    with TestClient(app) as client:
        assert client.options("/own-options", headers=PREFLIGHT).status_code == 401
        assert ran == []
        assert client.options("/own-options", headers=ready.bearer()).status_code == 200
    assert ran == ["own-options"]
