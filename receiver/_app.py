"""The HTTP face of the receiver (FastAPI).

* ``POST /ssf/events``: RFC 8935 push delivery (``application/secevent+jwt``, bearer auth).
* ``POST /oidc/backchannel-logout``: OIDC Back-Channel Logout 1.0 (form ``logout_token``).
* ``GET /ssf/status``: the stream status and counters; ``GET /metrics``: Prometheus text.
* ``GET /healthz``.

Processing (key fetches, SQLite, the blocking publish) runs in the thread pool; the event loop
only reads the request body, up to ``max_token_bytes``.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from starlette.concurrency import run_in_threadpool

from receiver._errors import DeliveryUnavailable, SetRejected
from receiver._receiver import Receiver

__all__ = ["create_app"]

_SET_MEDIA_TYPE = "application/secevent+jwt"
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_RETRY_AFTER_S = "5"


class _TooLarge(Exception):
    pass


def create_app(receiver: Receiver, *, start: bool = True) -> FastAPI:
    """The receiver's ASGI app. With ``start``, keys are loaded when the app starts; the
    receiver itself (and its sink) stay owned by the caller."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if start:
            await run_in_threadpool(receiver.start)
        yield

    app = FastAPI(title="Revocast receiver", lifespan=lifespan, docs_url=None, redoc_url=None)
    limit = receiver.settings.max_token_bytes
    push_tokens = receiver.settings.transmitter.push_tokens if receiver.settings.transmitter else ()

    @app.post("/ssf/events", status_code=202)
    async def push(request: Request) -> Response:
        if not push_tokens:
            return JSONResponse({"detail": "push delivery is not enabled"}, status_code=404)
        if not _bearer_ok(request.headers.get("authorization"), push_tokens):
            return JSONResponse(
                {"err": "authentication_failed", "description": "missing or wrong bearer token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != _SET_MEDIA_TYPE:
            return _set_error("invalid_request", f"Content-Type must be {_SET_MEDIA_TYPE}")
        try:
            body = await _read_limited(request, limit)
            token = body.decode("ascii").strip()
        except _TooLarge:
            return _set_error("invalid_request", f"body larger than {limit} bytes")
        except UnicodeDecodeError:
            return _set_error("invalid_request", "body is not a compact JWS")
        try:
            await run_in_threadpool(receiver.receive_set, token)
        except SetRejected as exc:
            return _set_error(exc.code, exc.description)
        except DeliveryUnavailable:
            return JSONResponse(
                {"detail": "temporarily unable to process the SET"},
                status_code=503,
                headers={"Retry-After": _RETRY_AFTER_S},
            )
        return Response(status_code=202)

    @app.post("/oidc/backchannel-logout")
    async def backchannel_logout(request: Request) -> Response:
        if not receiver.accepts_logout:
            return JSONResponse({"detail": "back-channel logout is not enabled"}, 404, _NO_STORE)
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != _FORM_MEDIA_TYPE:
            return _logout_error(f"Content-Type must be {_FORM_MEDIA_TYPE}")
        try:
            body = (await _read_limited(request, limit)).decode("ascii")
        except (_TooLarge, UnicodeDecodeError):
            return _logout_error("body too large or not ASCII")
        values = parse_qs(body, keep_blank_values=True).get("logout_token", [])
        if len(values) != 1 or not values[0]:
            return _logout_error("exactly one logout_token is required")
        try:
            await run_in_threadpool(receiver.receive_logout, values[0])
        except SetRejected as exc:
            return _logout_error(exc.description)
        except DeliveryUnavailable:
            return JSONResponse(
                {"error": "temporarily_unavailable", "error_description": "try again later"},
                status_code=503,
                headers={**_NO_STORE, "Retry-After": _RETRY_AFTER_S},
            )
        return Response(status_code=200, headers=_NO_STORE)

    @app.get("/ssf/status")
    def status() -> dict[str, Any]:
        s = receiver.status()
        return {
            "stream_id": s.stream_id,
            "verified": s.verified,
            "pending_verification": s.pending_state is not None,
            "last_verification_state": s.last_verification_state,
            "last_verification_at": _iso(s.last_verification_at),
            "last_event_at": _iso(s.last_event_at),
            "transmitter_status": s.transmitter_status,
            "last_error": s.last_error,
            "last_error_at": _iso(s.last_error_at),
            "unknown_event_types": receiver.metrics.unknown_event_types(),
        }

    @app.get("/metrics")
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            receiver.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def _bearer_ok(header: str | None, tokens: Sequence[str]) -> bool:
    scheme, _, presented = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    candidate = presented.strip().encode()
    # Compare against every configured token, so timing reveals neither match nor index.
    ok = False
    for token in tokens:
        ok |= hmac.compare_digest(candidate, token.encode())
    return ok


async def _read_limited(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _set_error(code: str, description: str) -> JSONResponse:
    return JSONResponse({"err": code, "description": description}, status_code=400)


def _logout_error(description: str) -> JSONResponse:
    return JSONResponse(
        {"error": "invalid_request", "error_description": description},
        status_code=400,
        headers=_NO_STORE,
    )


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
