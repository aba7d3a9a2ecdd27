"""FastAPI dependencies that return the verified claims.

Without the middleware (per route or per router)::

    from consumer_sdk.integrations.fastapi import RevocastBearer

    bearer = RevocastBearer(rc)

    @app.get("/me")
    async def me(claims: Annotated[dict[str, Any], Depends(bearer)]) -> dict[str, Any]:
        return {"sub": claims["sub"]}

With :class:`~consumer_sdk.integrations.asgi.RevocastMiddleware` installed, read what it
verified instead of verifying twice: ``Depends(verified_claims)``.

Refusals raise :class:`fastapi.HTTPException` with the statuses and headers of every other
adapter (401 + ``WWW-Authenticate``, 400, 503 + ``Retry-After``); FastAPI's handler renders the
body as ``{"detail": {"error": ..., "error_description": ...}}``. On a WebSocket route they raise
:class:`fastapi.WebSocketException`: the handshake is closed with the middleware's codes (1008,
or 1013 when the state is unavailable). ``RevocastBearer`` is a security scheme, so OpenAPI
documents the routes that use it as bearer-protected.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, WebSocketException
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import Claims, Rejection, authenticate
from consumer_sdk.integrations.asgi import (
    CLAIMS_STATE_KEY,
    WS_POLICY_VIOLATION,
    WS_TRY_AGAIN_LATER,
)

__all__ = ["RevocastBearer", "verified_claims"]


def _refusal(connection: HTTPConnection, rejection: Rejection) -> Exception:
    if connection.scope["type"] == "websocket":
        code = WS_TRY_AGAIN_LATER if rejection.status == 503 else WS_POLICY_VIOLATION
        return WebSocketException(code, reason=rejection.description)
    headers = {k: v for k, v in rejection.headers if k != "content-type"}
    return HTTPException(rejection.status, detail=rejection.body_dict, headers=headers)


class RevocastBearer(SecurityBase):
    """A dependency that verifies the request's bearer token and returns its claims.

    It runs inline on the event loop (``async``): verification is CPU-only and short.

    CORS preflights: a dependency runs only when its route's handler is about to, so it cannot
    let a request through without running the handler; it has no ``allow_preflight`` and
    refuses a preflight like any request without a token. ``CORSMiddleware`` answers
    preflights before routing, so they never get here; with
    :class:`~consumer_sdk.integrations.asgi.RevocastMiddleware` in front of it, use that
    middleware's ``allow_preflight``.
    """

    def __init__(
        self,
        revocast: Revocast,
        *,
        scheme_name: str | None = None,
        description: str | None = None,
    ) -> None:
        self.revocast = revocast
        self.model = HTTPBearerModel(bearerFormat="JWT", description=description)
        self.scheme_name = scheme_name or type(self).__name__

    async def __call__(self, connection: HTTPConnection) -> dict[str, Any]:
        # HTTPConnection, not Request: FastAPI passes it to HTTP and WebSocket routes alike.
        result = authenticate(self.revocast, connection.headers.getlist("authorization"))
        if isinstance(result, Rejection):
            raise _refusal(connection, result)
        return result


def verified_claims(request: HTTPConnection) -> dict[str, Any]:
    """The claims :class:`~consumer_sdk.integrations.asgi.RevocastMiddleware` verified.

    Raises :class:`RuntimeError` (a 500, failing closed) when the middleware did not verify
    this request: it is not installed, or the path is exempt.
    """
    claims: Claims | None = request.scope.get("state", {}).get(CLAIMS_STATE_KEY)
    if claims is None:
        raise RuntimeError(
            "no verified claims on this request: install RevocastMiddleware, and do not exempt "
            f"{request.url.path!r}, or use RevocastBearer instead"
        )
    return claims
