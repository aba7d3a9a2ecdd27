"""The readiness and metrics helpers: the plain function, the ASGI apps, the WSGI apps."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.testclient import TestClient
from werkzeug.test import Client

from consumer_sdk import (
    DataSourceState,
    FailurePolicy,
    Revocast,
    SourceErrorKind,
    StateUnavailableError,
)
from consumer_sdk.integrations.health import (
    asgi_health_app,
    asgi_metrics_app,
    health_report,
    wsgi_health_app,
    wsgi_metrics_app,
)
from consumer_sdk.testing import InMemorySource
from revocation_events import SubjectBlocked, TokenRevoked
from tests.consumer_sdk._helpers import FakeClock, settings
from tests.consumer_sdk.integrations._cases import ISSUER, MAX_STALENESS, Harness


def test_initializing_sdk_is_not_ready(harness: Harness) -> None:
    code, body = health_report(harness.revocast)
    assert code == 503
    assert body["status"] == "initializing"
    assert body["jwt_keys_loaded"] is None
    assert body["last_event_age_seconds"] is None


def test_valid_sdk_is_ready_and_reports_its_state(ready: Harness) -> None:
    ready.publish(TokenRevoked(issuer=ISSUER, jti="j1", expires_at=ready.expires))
    ready.publish(SubjectBlocked(issuer=ISSUER, sub="mallory"))
    ready.source.publish_raw(b"{}")  # unsigned: skipped and counted
    ready.clock.advance(4)
    code, body = health_report(ready.revocast)
    assert code == 200
    assert body["status"] == "valid"
    assert datetime.fromisoformat(body["since"]) == datetime.fromtimestamp(
        ready.revocast.status.since, UTC
    )
    assert body["last_error"] is None
    assert body["jwt_keys_loaded"] is True
    assert body["last_event_age_seconds"] == 4.0
    assert body["entries"]["jti"] == 1
    assert body["entries"]["blocked"] == 1
    assert body["skipped"] == {"unsigned": 1}


def test_caught_up_sdk_without_its_jwks_keys_is_not_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Every token would be refused as signed by an unknown key: not a backend to route to.
    def unreachable(self: jwt.PyJWKClient) -> Any:
        raise jwt.PyJWKClientConnectionError("connection refused")

    monkeypatch.setattr(jwt.PyJWKClient, "fetch_data", unreachable)
    source = InMemorySource()
    jwks = settings(jwt_keys={}, jwks_url="https://idp.example/jwks")
    rc = Revocast(jwks, source=source, clock=FakeClock())
    try:
        source.set_ready()
        code, body = health_report(rc)
        assert code == 503
        assert body["status"] == "valid"
        assert body["jwt_keys_loaded"] is False
    finally:
        rc.close()


def test_interrupted_sdk_stays_ready_within_max_staleness_then_says_why_not(
    ready: Harness,
) -> None:
    """verify() keeps answering from the last state for max_staleness after the stream
    broke: readiness follows it, so a broker blip does not take every instance of a service
    out of rotation at once (it answered 503 at the first INTERRUPTED)."""
    bound = ready.revocast.settings.max_staleness
    ready.source.interrupt("broker gone")
    code, body = health_report(ready.revocast)
    assert code == 200
    assert body["status"] == "interrupted"
    assert body["last_error"] == "source_error"
    assert body["jwt_keys_loaded"] is True
    ready.revocast.verify(ready.token())  # serving, as readiness says
    ready.clock.advance(bound + 1)
    code, body = health_report(ready.revocast)
    assert code == 503
    assert body["status"] == "interrupted"
    with pytest.raises(StateUnavailableError):
        ready.revocast.verify(ready.token())


def test_fail_open_sdk_stays_ready_through_an_outage_past_max_staleness() -> None:
    """With failure_policy=accept, verify() keeps accepting tokens after max_staleness:
    readiness follows it, rather than pull every instance out of rotation while each still
    serves. Not before the first catch-up: fail-open is for an outage, not a replay."""
    clock = FakeClock()
    source = InMemorySource()
    rc = Revocast(
        settings(max_staleness=MAX_STALENESS, failure_policy=FailurePolicy.ACCEPT),
        source=source,
        clock=clock,
    )
    try:
        h = Harness(rc, source, clock)
        assert health_report(rc)[0] == 503  # initializing: not in rotation yet
        source.set_ready()
        source.interrupt("broker gone")
        clock.advance(MAX_STALENESS + 1)
        rc.verify(h.token())  # fail-open: still accepting
        code, body = health_report(rc)
        assert code == 200
        assert body["status"] == "interrupted"
        rc.close()
        assert health_report(rc)[0] == 503  # closed: verify() refuses even fail-open
    finally:
        rc.close()


LEAKY_ERROR = (
    "Kafka: KafkaConnectionError: SASL SCRAM-SHA-512 authentication failed for user "
    "'svc-billing' at kafka-3.corp.internal:9094 (ssl_cafile=/etc/revocast/ca.pem)"
)
SECRETS_IN_IT = ("svc-billing", "kafka-3.corp.internal", "9094", "SCRAM", "/etc/revocast")


def fail(harness: Harness, error: str, kind: SourceErrorKind) -> None:
    """Record ``error`` of ``kind`` as the code that meets such a failure does."""
    harness.revocast.status_provider.update(DataSourceState.INTERRUPTED, error, kind=kind)


def body_of(revocast: Revocast, served: str) -> tuple[int, dict[str, Any], str]:
    """The health answer as the plain function, the ASGI app or the WSGI app serves it."""
    if served == "function":
        code, body = health_report(revocast)
        return code, body, json.dumps(body)
    if served == "asgi":
        with TestClient(asgi_health_app(revocast)) as client:
            response = client.get("/healthz")
        return response.status_code, response.json(), response.text
    wsgi = Client(wsgi_health_app(revocast)).get("/healthz")
    return wsgi.status_code, wsgi.get_json(), wsgi.get_data(as_text=True)


@pytest.mark.parametrize("served", ["function", "asgi", "wsgi"])
def test_unauthenticated_health_endpoint_does_not_leak_brokers_users_or_paths(
    ready: Harness, served: str
) -> None:
    """Health endpoints are served without a token: the Kafka error's text (broker hosts, SASL
    users, file paths) is reconnaissance for anyone who can reach them."""
    fail(ready, LEAKY_ERROR, SourceErrorKind.KAFKA_ERROR)
    code, body, raw = body_of(ready.revocast, served)
    assert code == 200
    assert body["last_error"] == "kafka_error"
    for secret in SECRETS_IN_IT:
        assert secret not in raw
    assert ready.revocast.status.last_error == LEAKY_ERROR  # the detail stays in the SDK


# Worded unlike any message of the SDK's, and naming a broker, a user and a path.
REWORDED = "no answer from kafka-3.corp.internal:9094 for svc-billing (/etc/revocast/ca.pem)"


@pytest.mark.parametrize("served", ["function", "asgi", "wsgi"])
@pytest.mark.parametrize("kind", list(SourceErrorKind), ids=lambda kind: kind.value)
def test_health_reports_the_recorded_kind_of_an_error_however_it_is_worded(
    ready: Harness, kind: SourceErrorKind, served: str
) -> None:
    """The kind comes from the code that met the failure: rewording a message can neither
    change what the endpoint reports nor put the text in it (matching the text against the
    SDK's message prefixes answered ``source_error`` for all of them)."""
    fail(ready, REWORDED, kind)
    _, body, raw = body_of(ready.revocast, served)
    assert body["last_error"] == kind.value
    for secret in SECRETS_IN_IT:
        assert secret not in raw


def test_health_never_reads_the_error_text_for_its_kind(ready: Harness) -> None:
    # Worded like the Kafka source's own messages, but reported without a kind.
    ready.source.interrupt("cannot connect to Kafka: NoBrokersAvailable")
    assert health_report(ready.revocast)[1]["last_error"] == "source_error"


def test_a_forked_worker_reports_the_forked_category(ready: Harness) -> None:
    ready.revocast.status_provider.after_fork()
    assert health_report(ready.revocast)[1]["last_error"] == "forked"


def test_closed_sdk_is_not_ready(ready: Harness) -> None:
    ready.revocast.close()
    assert health_report(ready.revocast)[0] == 503


def test_asgi_health_app_serves_the_report_as_json(harness: Harness) -> None:
    app = Starlette(routes=[Route("/healthz", asgi_health_app(harness.revocast))])
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 503
        harness.source.set_ready()
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "valid"
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"


def test_asgi_health_app_runs_as_a_top_level_app_with_lifespan(ready: Harness) -> None:
    with TestClient(asgi_health_app(ready.revocast)) as client:
        assert client.get("/anything").json()["status"] == "valid"


def test_wsgi_health_app_serves_the_report_as_json(harness: Harness) -> None:
    client = Client(wsgi_health_app(harness.revocast))
    refused = client.get("/")
    assert refused.status == "503 Service Unavailable"
    harness.source.set_ready()
    response = client.get("/")
    assert response.status == "200 OK"
    assert response.get_json()["status"] == "valid"


@pytest.mark.parametrize("kind", ["asgi", "wsgi"])
def test_metrics_app_serves_the_sdk_collectors(ready: Harness, kind: str) -> None:
    ready.publish(TokenRevoked(issuer=ISSUER, jti="j1", expires_at=ready.expires))
    if kind == "asgi":
        with TestClient(asgi_metrics_app()) as client:
            response = client.get("/metrics")
            content_type, text = response.headers["content-type"], response.text
    else:
        wsgi = Client(wsgi_metrics_app()).get("/metrics")
        content_type, text = wsgi.headers["content-type"], wsgi.get_data(as_text=True)
    assert content_type.startswith("text/plain; version=")
    assert 'revocast_events_applied_total{service="revocast",type="token.revoked"}' in text
    assert 'revocast_source_status{service="revocast",state="valid"} 1.0' in text


def test_asgi_health_app_counts_the_state_off_the_event_loop(
    ready: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The report counts every state entry (~0.4 s for 200 000 subject rules): inline, each
    # probe of a load balancer stalled every request on the loop for that long.
    counting = threading.Event()
    counted = threading.Event()
    size_by_kind = ready.revocast.state.size_by_kind

    def slow_count() -> dict[str, int]:
        counting.set()
        counted.wait(5)  # a big state; released below once the loop has shown it is free
        return size_by_kind()

    monkeypatch.setattr(ready.revocast.state, "size_by_kind", slow_count)
    sent: list[MutableMapping[str, Any]] = []

    async def receive() -> dict[str, Any]:
        raise AssertionError("not called")

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    async def get() -> None:
        await asgi_health_app(ready.revocast)({"type": "http", "path": "/healthz"}, receive, send)

    async def scenario() -> bool:
        probe = asyncio.create_task(get())
        while not counting.is_set() and not probe.done():
            await asyncio.sleep(0)  # let the probe start
        loop_was_free = not probe.done()
        counted.set()
        await probe
        return loop_was_free

    assert asyncio.run(scenario())
    assert sent[0]["status"] == 200
    assert json.loads(sent[1]["body"])["status"] == "valid"
