"""RevocastMiddleware under Starlette's own TestClient, plus raw ASGI for non-HTTP scopes."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import jwt
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from consumer_sdk import Revocast
from consumer_sdk.integrations.asgi import RevocastMiddleware
from consumer_sdk.testing import InMemorySource
from revocation_events import TokenRevoked
from tests.consumer_sdk._helpers import FakeClock, settings, token
from tests.consumer_sdk.integrations._cases import (
    CASES,
    ISSUER,
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


async def me(request: Request) -> JSONResponse:
    claims = request.state.revocast_claims
    return JSONResponse({"sub": claims["sub"], "jti": claims["jti"]})


async def open_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(
        {"claims": hasattr(request.state, "revocast_claims"), "user": request.scope.get("user")}
    )


async def ws(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"sub": websocket.state.revocast_claims["sub"]})
    await websocket.close()


def build_app(harness: Harness, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/me", me),
            Route("/healthz", open_endpoint),
            Route("/healthz/{rest:path}", open_endpoint),
            Route("/healthzz", open_endpoint),
            Route("/public/{rest:path}", open_endpoint),
            WebSocketRoute("/ws", ws),
        ],
        middleware=[
            Middleware(
                RevocastMiddleware,
                revocast=harness.revocast,
                exempt_paths=("/healthz", "/public/"),
                **options,
            )
        ],
    )


@pytest.fixture
def client(harness: Harness) -> Iterator[TestClient]:
    with TestClient(build_app(harness)) as client:
        yield client


def to_reply(response: httpx2.Response) -> Reply:
    return Reply(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.json() if response.content else None,
        response.content,
    )


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_middleware_answers_every_case(case: Case, harness: Harness, client: TestClient) -> None:
    def send(headers: Headers) -> Reply:
        return to_reply(client.get("/me", headers=headers))

    check(case, harness, send)


def test_revocation_published_between_requests_refuses_the_next_one(
    ready: Harness, client: TestClient
) -> None:
    headers = ready.bearer()
    assert client.get("/me", headers=headers).status_code == 200
    ready.publish(TokenRevoked(issuer=ISSUER, jti=ready.jti, expires_at=ready.expires))
    response = client.get("/me", headers=headers)
    assert response.status_code == 401
    assert response.json()["error_description"] == "token revoked (jti)"


def test_two_authorization_headers_reach_asgi_as_two_and_are_a_bad_request(
    ready: Harness, client: TestClient
) -> None:
    response = client.get("/me", headers=ready.bearer() + ready.bearer())
    assert response.status_code == 400
    assert response.json()["error_description"] == "more than one Authorization header"


def test_non_ascii_authorization_bytes_are_a_bad_request(
    ready: Harness, client: TestClient
) -> None:
    response = client.get("/me", headers=[(b"Authorization", b"Bearer \xe9t\xe9")])
    assert response.status_code == 400
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_request"')


def test_exempt_paths_are_served_without_a_token(ready: Harness, client: TestClient) -> None:
    assert client.get("/healthz").json() == {"claims": False, "user": None}
    assert client.get("/public/docs/index").status_code == 200


@pytest.mark.parametrize("path", ["/healthzz", "/healthz/admin", "/Healthz", "/public"])
def test_exempt_path_lookalike_still_needs_a_token(
    ready: Harness, client: TestClient, path: str
) -> None:
    assert client.get(path).status_code == 401


def test_claims_of_one_request_do_not_leak_into_the_next_exempt_request(
    ready: Harness, client: TestClient
) -> None:
    assert client.get("/me", headers=ready.bearer()).status_code == 200
    assert client.get("/healthz").json()["claims"] is False


def test_on_claims_sees_the_claims_and_the_scope(ready: Harness) -> None:
    def on_claims(claims: dict[str, Any], scope: Any) -> None:
        scope["user"] = claims["sub"]

    app = build_app(ready, on_claims=on_claims)
    app.router.routes.append(Route("/who", open_endpoint))
    with TestClient(app) as client:
        assert client.get("/who", headers=ready.bearer()).json()["user"] == ready.sub


def test_on_claims_raising_invalid_token_refuses_the_request(ready: Harness) -> None:
    def needs_admin(claims: dict[str, Any], scope: Any) -> None:
        if claims.get("role") != "admin":
            raise jwt.InvalidTokenError("not an admin")

    with TestClient(build_app(ready, on_claims=needs_admin)) as client:
        refused = client.get("/me", headers=ready.bearer())
        assert refused.status_code == 401
        assert refused.json()["error_description"] == "invalid token"
        assert client.get("/me", headers=ready.bearer(role="admin")).status_code == 200


def test_websocket_with_a_valid_token_is_accepted_with_its_claims(
    ready: Harness, client: TestClient
) -> None:
    with client.websocket_connect("/ws", headers=dict(ready.bearer())) as socket:
        assert socket.receive_json() == {"sub": ready.sub}


@pytest.mark.parametrize(
    ("is_ready", "headers", "code"),
    [
        (True, lambda h: {}, 1008),
        (True, lambda h: {"Authorization": "Bearer not.a.jwt"}, 1008),
        (False, lambda h: {"Authorization": f"Bearer {h.token()}"}, 1013),
    ],
    ids=["missing_token", "invalid_token", "state_unavailable"],
)
def test_refused_websocket_handshake_is_closed_before_accept(
    harness: Harness,
    client: TestClient,
    is_ready: bool,
    headers: Callable[[Harness], dict[str, str]],
    code: int,
) -> None:
    if is_ready:
        harness.source.set_ready()
    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/ws", headers=headers(harness)),
    ):
        pytest.fail("the handshake was accepted")
    assert closed.value.code == code


def test_lifespan_scope_passes_through_untouched(harness: Harness) -> None:
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await send({"type": "lifespan.startup.complete"})

    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    asyncio.run(RevocastMiddleware(inner, harness.revocast)(scope, receive, send))
    assert seen == [scope]
    assert scope["state"] == {}
    assert sent == [{"type": "lifespan.startup.complete"}]


def test_starlette_lifespan_runs_with_the_middleware_installed(harness: Harness) -> None:
    started: list[bool] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    app = Starlette(
        lifespan=lifespan,
        middleware=[Middleware(RevocastMiddleware, revocast=harness.revocast)],
    )
    with TestClient(app):
        assert started == [True]


def test_exempt_paths_are_matched_below_the_mount_point(ready: Harness) -> None:
    # Starlette's Mount (and uvicorn --root-path) put the prefix in both scope["path"] and
    # scope["root_path"]; the app's routes, and so its exempt paths, are named below it.
    parent = Starlette(routes=[Mount("/api", app=build_app(ready))])
    with TestClient(parent) as client:
        assert client.get("/api/healthz").json() == {"claims": False, "user": None}
        assert client.get("/api/public/docs").status_code == 200
        for path in ("/api/healthzz", "/api/healthz/admin", "/api/me", "/healthz"):
            assert client.get(path).status_code in (401, 404), path
        assert client.get("/api/me").status_code == 401
        assert client.get("/api/me", headers=ready.bearer()).status_code == 200


def test_one_string_as_exempt_paths_is_refused(harness: Harness) -> None:
    # Iterated, "/healthz" is its characters: "/" among them exempted every path.
    with pytest.raises(TypeError, match="not one string"):
        RevocastMiddleware(Starlette(), harness.revocast, exempt_paths="/healthz")


def test_exempting_the_index_page_exempts_nothing_else(ready: Harness) -> None:
    # "/" ends in "/": as a prefix entry it exempted every path.
    app = Starlette(
        routes=[Route("/", open_endpoint), Route("/me", me)],
        middleware=[Middleware(RevocastMiddleware, revocast=ready.revocast, exempt_paths=("/",))],
    )
    with TestClient(app) as client:
        assert client.get("/").json() == {"claims": False, "user": None}
        assert client.get("/me").status_code == 401
        assert client.get("/me", headers=ready.bearer()).status_code == 200


def test_async_on_claims_is_awaited(ready: Harness) -> None:
    # Called and never awaited, its check never ran: every token passed.
    async def needs_admin(claims: dict[str, Any], scope: Any) -> None:
        if claims.get("role") != "admin":
            raise jwt.InvalidTokenError("not an admin")
        scope["user"] = claims["sub"]

    app = build_app(ready, on_claims=needs_admin)
    app.router.routes.append(Route("/who", open_endpoint))
    with TestClient(app) as client:
        refused = client.get("/who", headers=ready.bearer())
        assert refused.status_code == 401
        assert refused.json()["error_description"] == "invalid token"
        assert client.get("/who", headers=ready.bearer(role="admin")).json()["user"] == ready.sub


def cors_app(harness: Harness, **options: Any) -> Starlette:
    """The guard outside, CORSMiddleware inside it: the layout that used to refuse preflights."""
    return Starlette(
        routes=[Route("/me", me)],
        middleware=[
            Middleware(RevocastMiddleware, revocast=harness.revocast, **options),
            Middleware(CORSMiddleware, allow_origins=[ORIGIN], allow_headers=["authorization"]),
        ],
    )


def test_cors_preflight_reaches_a_cors_layer_behind_the_middleware(ready: Harness) -> None:
    with TestClient(cors_app(ready, allow_preflight=True)) as client:
        response = client.options("/me", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize("headers", NOT_PREFLIGHTS.values(), ids=NOT_PREFLIGHTS.keys())
def test_options_that_is_not_a_genuine_preflight_is_verified(
    ready: Harness, headers: Headers
) -> None:
    with TestClient(build_app(ready)) as client:
        response = client.options("/me", headers=headers)
    assert response.status_code == 401


def test_preflight_is_verified_when_allow_preflight_is_off(ready: Harness) -> None:
    with TestClient(cors_app(ready, allow_preflight=False)) as client:
        response = client.options("/me", headers=PREFLIGHT)
    assert response.status_code == 401


def test_preflight_is_verified_by_default(ready: Harness) -> None:
    # Opt-in: the middleware cannot tell whether a handler behind it runs for the preflight.
    with TestClient(cors_app(ready)) as client:
        response = client.options("/me", headers=PREFLIGHT)
    assert response.status_code == 401


def test_preflight_reaching_a_handler_carries_no_claims(ready: Harness) -> None:
    """A route that accepts OPTIONS itself runs for a preflight, but never as anyone."""
    app = Starlette(
        routes=[Route("/any", open_endpoint, methods=["GET", "OPTIONS"])],
        middleware=[Middleware(RevocastMiddleware, revocast=ready.revocast, allow_preflight=True)],
    )
    with TestClient(app) as client:
        assert client.get("/any", headers=ready.bearer()).json()["claims"] is True
        response = client.options("/any", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.json()["claims"] is False


def test_preflight_drops_claims_a_server_put_in_the_request_state(ready: Harness) -> None:
    # Servers copy the lifespan state into each request's scope: claims stored there (by
    # mistake, or by an outer layer) must not reach the app as this preflight's identity.
    seen: list[Any] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(dict(scope["state"]))

    async def receive() -> Any:
        raise AssertionError("not called")

    async def send(message: Any) -> None:
        raise AssertionError("not called")

    headers = [(k.lower().encode(), v.encode()) for k, v in PREFLIGHT]
    scope = {
        "type": "http",
        "method": "OPTIONS",
        "path": "/me",
        "headers": headers,
        "state": {"revocast_claims": {"sub": "someone"}, "db": "pool"},
    }
    middleware = RevocastMiddleware(inner, ready.revocast, allow_preflight=True)
    asyncio.run(middleware(scope, receive, send))
    assert seen == [{"db": "pool"}]


def test_token_while_the_jwks_keys_are_not_loaded_yet_answers_503_not_401(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The SDK is not ready (its health says 503): a 401 invalid_token tells the client to
    # drop a token that may be valid, where a 503 tells it to retry.
    def unreachable(self: jwt.PyJWKClient) -> Any:
        raise jwt.PyJWKClientConnectionError("connection refused")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", unreachable)
    source = InMemorySource()
    rc = Revocast(
        settings(jwt_keys={}, jwks_url="https://idp.example/jwks"), source=source, clock=FakeClock()
    )
    try:
        source.set_ready()
        app = Starlette(
            routes=[Route("/me", me)], middleware=[Middleware(RevocastMiddleware, revocast=rc)]
        )
        with TestClient(app) as client:
            response = client.get("/me", headers={"Authorization": f"Bearer {token()}"})
        assert response.status_code == 503
    finally:
        rc.close()
