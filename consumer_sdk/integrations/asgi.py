"""Pure ASGI middleware for Starlette, FastAPI or any ASGI app.

    from consumer_sdk.integrations.asgi import RevocastMiddleware

    app = Starlette(routes=..., middleware=[
        Middleware(RevocastMiddleware, revocast=rc, exempt_paths=("/healthz", "/metrics")),
    ])
    # FastAPI: app.add_middleware(RevocastMiddleware, revocast=rc)

    async def handler(request):
        claims = request.state.revocast_claims

CORS: put ``CORSMiddleware`` outside this one (Starlette: listed before it; FastAPI: its
``add_middleware`` call after this one's), so refusals carry the CORS headers that let a browser
app read them (to tell an expired or revoked token from a network error); it then answers
preflights itself. A CORS layer inside this one needs ``allow_preflight=True`` (below).

Claims land on ``scope["state"]["revocast_claims"]``, which Starlette exposes as
``request.state.revocast_claims``; ``scope["state"]`` is per request (servers copy the lifespan
state into each request's scope), so nothing leaks between requests.

Verification runs inline on the event loop, not in a thread: it is CPU-only and short (tens of
microseconds: a signature check and dictionary lookups). The request path never waits on Kafka;
the revocation state is synced by the SDK's own thread. A thread hop would cost more than the
work.

Scopes:

* ``http``: refused requests get the responses described in :mod:`consumer_sdk.integrations`;
  the wrapped app is not called.
* ``websocket``: the handshake's ``Authorization`` header is verified the same way. A refused
  handshake is closed before it is accepted (the server answers the upgrade with HTTP 403)
  with close code 1008 (policy violation) and the description as reason; when the state is
  unavailable, with 1013 (try again later), so clients know to retry rather than re-authenticate.
* anything else (``lifespan``…): passed through untouched.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, MutableMapping
from typing import Any

import jwt

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import (
    Claims,
    Rejection,
    authenticate,
    exempt_set,
    is_exempt,
    is_preflight,
    refused,
)

__all__ = ["CLAIMS_STATE_KEY", "RevocastMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

CLAIMS_STATE_KEY = "revocast_claims"
"""Key of the claims in ``scope["state"]`` (``request.state.revocast_claims``)."""

WS_POLICY_VIOLATION = 1008
WS_TRY_AGAIN_LATER = 1013


class RevocastMiddleware:
    """Verifies the bearer token of every HTTP request and WebSocket handshake.

    ``exempt_paths``: paths served without a token (health checks, metrics), matched exactly
    against the path below the app's mount point (``scope["path"]`` less ``scope["root_path"]``,
    as Starlette's router matches routes); an entry ending in ``/`` exempts every path below it,
    except ``/`` itself, which exempts the index page only.
    ``on_claims(claims, scope)`` runs after a token is accepted, before the app; raise a
    :class:`jwt.InvalidTokenError` there to refuse the token (401 ``invalid_token``). It may be
    ``async``: its result is awaited.
    ``allow_preflight`` (default off): a CORS preflight (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``, without ``Authorization``: browsers send preflights
    without credentials) goes to the app unverified and without claims (any
    ``revocast_claims`` in ``scope["state"]`` is removed), for a CORS layer inside to answer. A
    plain ``OPTIONS``, or one carrying ``Authorization``, is verified as usual. The app is
    called as is, so a handler that itself accepts ``OPTIONS`` (a mounted ASGI app, a route
    listing ``OPTIONS``) runs for a preflight without a token. This middleware cannot tell
    which will answer, so it is opt-in (fail safe): turn it on when a CORS layer inside
    answers preflights and no handler does more for an ``OPTIONS`` than answer it.
    """

    def __init__(
        self,
        app: ASGIApp,
        revocast: Revocast,
        *,
        exempt_paths: Collection[str] = (),
        on_claims: Callable[[Claims, Scope], object] | None = None,
        allow_preflight: bool = False,
    ) -> None:
        self.app = app
        self.revocast = revocast
        self.exempt_paths = exempt_set(exempt_paths)
        self.on_claims = on_claims
        self.allow_preflight = allow_preflight

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket") or is_exempt(route_path(scope), self.exempt_paths):
            await self.app(scope, receive, send)
            return
        if kind == "http" and self.allow_preflight and _is_preflight(scope):
            scope.get("state", {}).pop(CLAIMS_STATE_KEY, None)
            await self.app(scope, receive, send)
            return
        values = [v.decode("latin-1") for k, v in scope["headers"] if k.lower() == b"authorization"]
        result = authenticate(self.revocast, values)
        if not isinstance(result, Rejection) and self.on_claims is not None:
            result = await _run_hook(self.on_claims, result, scope)
        if isinstance(result, Rejection):
            if kind == "http":
                await send_rejection(send, result)
            else:
                code = WS_TRY_AGAIN_LATER if result.status == 503 else WS_POLICY_VIOLATION
                await send({"type": "websocket.close", "code": code, "reason": result.description})
            return
        scope.setdefault("state", {})[CLAIMS_STATE_KEY] = result
        await self.app(scope, receive, send)


def _is_preflight(scope: Scope) -> bool:
    if scope["method"] != "OPTIONS":
        return False
    headers = {k.lower().decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
    return is_preflight("OPTIONS", headers.get)


async def _run_hook(
    hook: Callable[[Claims, Scope], object], claims: Claims, scope: Scope
) -> Claims | Rejection:
    try:
        outcome = hook(claims, scope)
        if inspect.isawaitable(outcome):  # an async hook: its check is in the awaitable
            await outcome
    except jwt.InvalidTokenError as exc:
        return refused(exc)
    return claims


def route_path(scope: Scope) -> str:
    """``scope["path"]`` below the mount point: servers (uvicorn ``--root-path``) and Starlette's
    ``Mount`` put the prefix in both ``path`` and ``root_path`` (ASGI spec); the same rule as
    Starlette's router, so an exempt path names the same route the app does."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


async def send_rejection(send: Send, rejection: Rejection) -> None:
    """Write ``rejection`` as a complete HTTP response."""
    body = rejection.body
    headers = [(k.encode(), v.encode()) for k, v in rejection.headers]
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": rejection.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
