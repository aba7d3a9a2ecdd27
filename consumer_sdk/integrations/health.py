"""Readiness and metrics endpoints, for any framework.

    from consumer_sdk.integrations import health

    # Starlette / FastAPI
    routes = [Route("/healthz", health.asgi_health_app(rc)),
              Route("/metrics", health.asgi_metrics_app())]
    # WSGI (werkzeug's DispatcherMiddleware, or call health_report() from a view)
    app = DispatcherMiddleware(app, {"/healthz": health.wsgi_health_app(rc)})

Remember to exempt these paths from the token middleware.

:func:`health_report` answers 200 while ``verify()`` answers from a known state with its JWT
keys loaded (a ``jwks_url`` fetched): the source is VALID, or INTERRUPTED for no longer than
``max_staleness`` (the SDK keeps serving its last state that long, as ``verify()`` does). It
answers 503 otherwise (INITIALIZING, INTERRUPTED past ``max_staleness``, OFF, or no keys yet),
except that with ``failure_policy=accept`` an instance that has caught up once stays ready for a
whole outage, since its ``verify()`` keeps accepting tokens. So a load balancer routes only to
instances that have caught up with the revocation topic and can verify tokens, and a broker
blip shorter than ``max_staleness`` does not take every instance of a service out of rotation
at once. The body reports the state, since when, the
kind of the last error, whether the JWT keys are loaded (``null`` while no state is served),
the age of the last applied event, the state's entries by kind and the skipped records by
reason.

These endpoints are usually served without a token, so ``last_error`` is the error's kind
(:class:`consumer_sdk.SourceErrorKind`, as the code that recorded the error named it), never
its text (which may name brokers, SASL users or file paths): ``null`` or a kind's value
(``"kafka_unreachable"``, ``"kafka_unauthorized"``, ``"source_error"`` for any other…).
The text stays in ``Revocast.status.last_error``, and the Kafka source logs it (warning).

The metrics helpers serve ``prometheus_client``'s registry (the SDK's collectors register on
the default one); they need the ``metrics`` extra (``prometheus-client``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from consumer_sdk._client import Revocast
from consumer_sdk._settings import FailurePolicy
from consumer_sdk._status import DataSourceState
from consumer_sdk.integrations.asgi import ASGIApp, Receive, Scope, Send
from consumer_sdk.integrations.wsgi import Environ, StartResponse, WSGIApp

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = [
    "asgi_health_app",
    "asgi_metrics_app",
    "health_report",
    "metrics_report",
    "wsgi_health_app",
    "wsgi_metrics_app",
]

_JSON = "application/json"
_REASONS = {200: "OK", 503: "Service Unavailable"}

Payload = Callable[[], tuple[int, list[tuple[str, str]], bytes]]
"""Produces ``(status code, headers, body)`` for one request."""


def health_report(revocast: Revocast) -> tuple[int, dict[str, Any]]:
    """``(status code, JSON-able body)``: 200 when ``verify()`` answers from a caught-up state
    with its JWT keys loaded: the state is VALID, or INTERRUPTED within ``max_staleness`` (with
    ``failure_policy=accept``: for as long as it lasts); else 503."""
    # In a forked worker this starts the process's own sync thread if no request has yet
    # (documented behaviour of wait_until_ready); it never blocks with a zero timeout. Once the
    # state is VALID, it is False only while the JWKS keys are not loaded: every token would
    # be refused as signed by an unknown key.
    caught_up = revocast.wait_until_ready(0)
    status = revocast.status
    stats = revocast.stats()
    now = revocast.clock()
    last = status.last_event_at
    kind = status.error_kind
    valid = status.state is DataSourceState.VALID
    # What verify() serves from: the state, or the last one for max_staleness after it broke,
    # or (failure_policy=accept, after the first catch-up: ``caught_up``) for the whole outage.
    settings = revocast.settings
    serving = (
        valid
        or revocast.status_provider.serving_stale(status, settings.max_staleness)
        or (
            settings.failure_policy is FailurePolicy.ACCEPT
            and status.state is DataSourceState.INTERRUPTED
        )
    )
    body = {
        "status": status.state.value,
        "since": datetime.fromtimestamp(status.since, UTC).isoformat(),
        "last_error": None if kind is None else kind.value,  # never the text: see above
        "jwt_keys_loaded": caught_up if serving else None,
        "last_event_age_seconds": None if last is None else round(max(now - last, 0.0), 3),
        "entries": stats["entries"],
        "skipped": stats["skipped"],
    }
    return (200 if serving and caught_up else 503), body


def _health_payload(revocast: Revocast) -> tuple[int, list[tuple[str, str]], bytes]:
    code, body = health_report(revocast)
    data = json.dumps(body, separators=(",", ":")).encode()
    headers = [
        ("content-type", _JSON),
        ("cache-control", "no-store"),
        ("content-length", str(len(data))),
    ]
    return code, headers, data


def metrics_report(registry: CollectorRegistry | None = None) -> tuple[str, bytes]:
    """``(content type, body)`` of ``prometheus_client.generate_latest(registry)``."""
    try:
        import prometheus_client
    except ImportError as exc:  # pragma: no cover - only without the optional dependency
        raise ImportError(
            "the /metrics helpers need prometheus-client (the 'metrics' extra)"
        ) from exc
    chosen = prometheus_client.REGISTRY if registry is None else registry
    return prometheus_client.CONTENT_TYPE_LATEST, prometheus_client.generate_latest(chosen)


async def _serve_lifespan(receive: Receive, send: Send) -> None:
    # So the helpers can also run as a server's top-level app.
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _off_the_loop(payload: Payload) -> tuple[int, list[tuple[str, str]], bytes]:
    """``payload()`` in the loop's default executor: a health report counts every entry of
    the state (~0.4 s for 200 000 subject rules), which inline would stall every request on
    this event loop. Inline where no asyncio loop runs (a trio server)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return payload()
    return await loop.run_in_executor(None, payload)


class _ASGIEndpoint:
    # A class, not a function: Starlette's Route takes plain functions for request handlers
    # and instances for ASGI apps, so Route("/healthz", asgi_health_app(rc)) works.
    def __init__(self, payload: Payload) -> None:
        self._payload = payload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _serve_lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"health endpoints serve HTTP only, not {scope['type']!r}")
        code, headers, data = await _off_the_loop(self._payload)
        raw = [(k.encode(), v.encode()) for k, v in headers]
        await send({"type": "http.response.start", "status": code, "headers": raw})
        await send({"type": "http.response.body", "body": data})


def _wsgi(payload: Payload) -> WSGIApp:
    def app(environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        code, headers, data = payload()
        start_response(f"{code} {_REASONS.get(code, '')}".rstrip(), headers)
        return [data]

    return app


def _metrics_payload(registry: CollectorRegistry | None) -> Payload:
    metrics_report(registry)  # fail at setup, not on the first scrape, without the extra

    def payload() -> tuple[int, list[tuple[str, str]], bytes]:
        content_type, data = metrics_report(registry)
        return 200, [("content-type", content_type), ("content-length", str(len(data)))], data

    return payload


def asgi_health_app(revocast: Revocast) -> ASGIApp:
    """An ASGI app answering every HTTP request with :func:`health_report` as JSON."""
    return _ASGIEndpoint(lambda: _health_payload(revocast))


def wsgi_health_app(revocast: Revocast) -> WSGIApp:
    """A WSGI app answering every request with :func:`health_report` as JSON."""
    return _wsgi(lambda: _health_payload(revocast))


def asgi_metrics_app(registry: CollectorRegistry | None = None) -> ASGIApp:
    """An ASGI app serving the Prometheus text exposition of ``registry`` (default: global)."""
    return _ASGIEndpoint(_metrics_payload(registry))


def wsgi_metrics_app(registry: CollectorRegistry | None = None) -> WSGIApp:
    """A WSGI app serving the Prometheus text exposition of ``registry`` (default: global)."""
    return _wsgi(_metrics_payload(registry))
