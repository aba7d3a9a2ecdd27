"""``orders``: a Starlette service behind the pure ASGI middleware."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumer_sdk.integrations.asgi import RevocastMiddleware
from revocast.demo.apps._sdk import health, revocast, whoami


async def whoami_endpoint(request: Request) -> JSONResponse:
    return JSONResponse(whoami(request.state.revocast_claims, "starlette"))


async def healthz(request: Request) -> JSONResponse:
    code, body = health()
    return JSONResponse(body, status_code=code)


app = Starlette(
    routes=[Route("/whoami", whoami_endpoint), Route("/healthz", healthz)],
    middleware=[Middleware(RevocastMiddleware, revocast=revocast, exempt_paths=("/healthz",))],
)
