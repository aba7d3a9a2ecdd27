"""The Flask extension under Flask's test client, as an app-wide guard and as a decorator."""

from __future__ import annotations

import os
from typing import Any

import pytest
from flask import Flask, Response, g, request
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from consumer_sdk.integrations.flask import RevocastFlask, require_token
from revocation_events import TokenRevoked
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

MODES = ["guard", "decorator"]


def build_app(harness: Harness, mode: str) -> Flask:
    app = Flask(__name__)
    ext = RevocastFlask(protect_all=mode == "guard", exempt_paths=("/healthz",))
    ext.init_app(app, harness.revocast)

    def me() -> dict[str, Any]:
        return {"sub": g.revocast_claims["sub"], "jti": g.revocast_claims["jti"]}

    app.add_url_rule("/me", view_func=me if mode == "guard" else require_token(me))
    app.add_url_rule("/both", "both", require_token(me))

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"claims": "revocast_claims" in g}

    @app.after_request
    def tag(response: Response) -> Response:
        response.headers["X-Worker-Pid"] = str(os.getpid())
        return response

    return app


def to_reply(response: TestResponse) -> Reply:
    return Reply(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.get_json(),
        response.get_data(),
    )


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_flask_extension_answers_every_case(case: Case, mode: str, harness: Harness) -> None:
    client = build_app(harness, mode).test_client()

    def send(headers: Headers) -> Reply:
        return to_reply(client.get("/me", headers=headers))

    check(case, harness, send)


def test_guard_leaves_exempt_paths_open(ready: Harness) -> None:
    client = build_app(ready, "guard").test_client()
    assert client.get("/healthz").get_json() == {"claims": False}
    assert client.get("/healthz/x").status_code == 401


def test_without_the_guard_only_decorated_views_need_a_token(ready: Harness) -> None:
    client: FlaskClient = build_app(ready, "decorator").test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/me").status_code == 401


def test_guard_and_decorator_together_verify_once(
    ready: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    verify = ready.revocast.verify

    def counting(token: str | bytes) -> dict[str, Any]:
        calls.append("verify")
        return verify(token)

    monkeypatch.setattr(ready.revocast, "verify", counting)
    client = build_app(ready, "guard").test_client()
    assert client.get("/both", headers=ready.bearer()).status_code == 200
    assert calls == ["verify"]


def test_after_request_hooks_still_run_on_a_refusal(ready: Harness) -> None:
    response = build_app(ready, "guard").test_client().get("/me")
    assert response.status_code == 401
    assert response.headers["X-Worker-Pid"] == str(os.getpid())


def test_extension_with_an_app_but_no_client_is_refused() -> None:
    with pytest.raises(TypeError, match="give the Revocast client"):
        RevocastFlask(Flask(__name__))


@pytest.mark.parametrize("mode", MODES)
def test_every_request_is_verified_even_when_requests_share_an_app_context(
    ready: Harness, mode: str
) -> None:
    # ``app.app_context().push()`` at import time (a common Flask-SQLAlchemy recipe) under a
    # gunicorn sync worker: every request reuses that app context, and so one ``flask.g``.
    app = build_app(ready, mode)
    with app.app_context():
        client = app.test_client()
        headers = ready.bearer()
        assert client.get("/me", headers=headers).status_code == 200
        assert client.get("/me").status_code == 401
        assert client.get("/healthz").get_json() == {"claims": False}
        ready.publish(TokenRevoked(issuer=ISSUER, jti=ready.jti, expires_at=ready.expires))
        assert client.get("/me", headers=headers).status_code == 401


def test_one_string_as_exempt_paths_is_refused(harness: Harness) -> None:
    # Iterated, "/healthz" is its characters: "/" among them exempted every path.
    with pytest.raises(TypeError, match="not one string"):
        RevocastFlask(Flask(__name__), harness.revocast, exempt_paths="/healthz")


def cors_app(harness: Harness, **options: Any) -> tuple[Flask, list[str]]:
    """A guarded app whose CORS handling is an ``after_request`` hook (as flask-cors's
    ``CORS(app)`` adds its headers), with a view that handles ``OPTIONS`` itself."""
    app = Flask(__name__)
    RevocastFlask(app, harness.revocast, **options)
    ran: list[str] = []

    @app.get("/me")
    def me() -> dict[str, Any]:
        ran.append("me")
        return {"sub": g.revocast_claims["sub"]}

    @app.route("/own-options", methods=["GET", "OPTIONS"])
    def own_options() -> dict[str, Any]:
        ran.append("own-options")
        return {"claims": "revocast_claims" in g}

    @app.after_request
    def cors(response: Response) -> Response:
        ran.append(f"after_request claims={'revocast_claims' in g}")
        if request.headers.get("Origin") == ORIGIN:
            response.headers["Access-Control-Allow-Origin"] = ORIGIN
        return response

    return app, ran


def test_cors_preflight_gets_flasks_automatic_answer_through_the_guard(ready: Harness) -> None:
    app, ran = cors_app(ready)
    response = app.test_client().options("/me", headers=PREFLIGHT)
    assert response.status_code == 200
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "GET" in response.headers["Allow"]
    assert ran == ["after_request claims=False"]  # no view ran, no claims on g


def test_preflight_to_a_view_that_handles_options_itself_is_refused(ready: Harness) -> None:
    # The view would run for it, without a token: verify (and refuse) instead.
    app, ran = cors_app(ready)
    client = app.test_client()
    assert client.options("/own-options", headers=PREFLIGHT).status_code == 401
    assert "own-options" not in ran
    assert client.options("/own-options", headers=ready.bearer()).get_json() == {"claims": True}


@pytest.mark.parametrize("headers", NOT_PREFLIGHTS.values(), ids=NOT_PREFLIGHTS.keys())
def test_options_that_is_not_a_genuine_preflight_is_verified(
    ready: Harness, headers: Headers
) -> None:
    app, ran = cors_app(ready)
    assert app.test_client().options("/me", headers=headers).status_code == 401
    assert "me" not in ran


def test_preflight_is_verified_when_allow_preflight_is_off(ready: Harness) -> None:
    app, _ = cors_app(ready, allow_preflight=False)
    assert app.test_client().options("/me", headers=PREFLIGHT).status_code == 401
