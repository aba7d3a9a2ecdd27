"""A Starlette service for uvicorn: ``uvicorn tests...servers.starlette_app:app``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from consumer_sdk import Revocast
from consumer_sdk.integrations.asgi import RevocastMiddleware
from consumer_sdk.integrations.health import asgi_health_app

rc = Revocast.from_env()


async def whoami(request: Request) -> JSONResponse:
    claims = request.state.revocast_claims
    return JSONResponse({"sub": claims["sub"], "jti": claims["jti"], "pid": os.getpid()})


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    rc.close()


app = Starlette(
    routes=[Route("/whoami", whoami), Route("/healthz", asgi_health_app(rc))],
    middleware=[Middleware(RevocastMiddleware, revocast=rc, exempt_paths=("/healthz",))],
    lifespan=lifespan,
)
