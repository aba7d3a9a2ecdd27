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
body as ``{"detail": {"error": ..., "error_description": ...}}``. ``RevocastBearer`` is a
security scheme, so OpenAPI documents the routes that use it as bearer-protected.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import Claims, Rejection, authenticate
from consumer_sdk.integrations.asgi import CLAIMS_STATE_KEY

__all__ = ["RevocastBearer", "verified_claims"]


def _http_exception(rejection: Rejection) -> HTTPException:
    headers = {k: v for k, v in rejection.headers if k != "content-type"}
    return HTTPException(rejection.status, detail=rejection.body_dict, headers=headers)


class RevocastBearer(SecurityBase):
    """A dependency that verifies the request's bearer token and returns its claims.

    It runs inline on the event loop (``async``): verification is CPU-only and short.
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

    async def __call__(self, request: Request) -> dict[str, Any]:
        result = authenticate(self.revocast, request.headers.getlist("authorization"))
        if isinstance(result, Rejection):
            raise _http_exception(result)
        return result


def verified_claims(request: Request) -> dict[str, Any]:
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
