"""RevocastWSGIMiddleware under werkzeug's test client (a plain WSGI app, no framework)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import jwt
import pytest
from werkzeug.test import Client, TestResponse

from consumer_sdk.integrations.wsgi import CLAIMS_ENVIRON_KEY, RevocastWSGIMiddleware, StartResponse
from tests.consumer_sdk.integrations._cases import (
    CASES,
    NOT_PREFLIGHTS,
    PREFLIGHT,
    Case,
    Harness,
    Headers,
    Reply,
    case_ids,
    check,
)


def inner_app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    claims = environ.get(CLAIMS_ENVIRON_KEY)
    body = {"sub": claims["sub"], "jti": claims["jti"]} if claims else {"claims": None}
    start_response("200 OK", [("content-type", "application/json")])
    return [json.dumps(body).encode()]


def make_client(harness: Harness, **options: Any) -> Client:
    return Client(
        RevocastWSGIMiddleware(
            inner_app, harness.revocast, exempt_paths=("/healthz", "/public/"), **options
        )
    )


def to_reply(response: TestResponse) -> Reply:
    return Reply(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.get_json(),
        response.get_data(),
    )


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_wsgi_middleware_answers_every_case(case: Case, harness: Harness) -> None:
    client = make_client(harness)

    def send(headers: Headers) -> Reply:
        return to_reply(client.get("/me", headers=headers))

    check(case, harness, send)


def test_exempt_paths_are_served_without_a_token(ready: Harness) -> None:
    client = make_client(ready)
    assert client.get("/healthz").get_json() == {"claims": None}
    assert client.get("/public/a/b").status_code == 200


@pytest.mark.parametrize("path", ["/healthzz", "/healthz/admin", "/public"])
def test_exempt_path_lookalike_still_needs_a_token(ready: Harness, path: str) -> None:
    assert make_client(ready).get(path).status_code == 401


def test_exempt_paths_match_path_info_below_the_mount_point(ready: Harness) -> None:
    client = make_client(ready)
    assert client.get("/healthz", environ_overrides={"SCRIPT_NAME": "/svc"}).status_code == 200


def test_on_claims_raising_invalid_token_refuses_the_request(ready: Harness) -> None:
    def needs_admin(claims: dict[str, Any], environ: dict[str, Any]) -> None:
        if claims.get("role") != "admin":
            raise jwt.InvalidTokenError("not an admin")

    client = make_client(ready, on_claims=needs_admin)
    assert client.get("/me", headers=ready.bearer()).status_code == 401
    assert client.get("/me", headers=ready.bearer(role="admin")).status_code == 200


def test_one_string_as_exempt_paths_is_refused(harness: Harness) -> None:
    # Iterated, "/healthz" is its characters: "/" among them exempted every path.
    with pytest.raises(TypeError, match="not one string"):
        RevocastWSGIMiddleware(inner_app, harness.revocast, exempt_paths="/healthz")


def test_exempting_the_index_page_exempts_nothing_else(ready: Harness) -> None:
    # "/" ends in "/": as a prefix entry it exempted every path.
    client = Client(RevocastWSGIMiddleware(inner_app, ready.revocast, exempt_paths=("/",)))
    assert client.get("/").get_json() == {"claims": None}
    assert client.get("/me").status_code == 401
    assert client.get("/me", headers=ready.bearer()).status_code == 200


def test_async_on_claims_fails_closed(ready: Harness) -> None:
    # Nothing awaits it under WSGI: called, its check never ran and every token passed.
    async def needs_admin(claims: dict[str, Any], environ: dict[str, Any]) -> None:
        raise jwt.InvalidTokenError("not an admin")

    client = make_client(ready, on_claims=needs_admin)
    with pytest.raises(TypeError, match="on_claims returned an awaitable"):
        client.get("/me", headers=ready.bearer())


def test_cors_preflight_reaches_the_app_unverified_and_without_claims(ready: Harness) -> None:
    response = make_client(ready, allow_preflight=True).open(
        "/me",
        method="OPTIONS",
        headers=PREFLIGHT,
        environ_overrides={CLAIMS_ENVIRON_KEY: {"sub": "someone"}},  # left by an outer layer
    )
    assert response.status_code == 200
    assert response.get_json() == {"claims": None}


@pytest.mark.parametrize("headers", NOT_PREFLIGHTS.values(), ids=NOT_PREFLIGHTS.keys())
def test_options_that_is_not_a_genuine_preflight_is_verified(
    ready: Harness, headers: Headers
) -> None:
    assert make_client(ready).open("/me", method="OPTIONS", headers=headers).status_code == 401


def test_preflight_is_verified_when_allow_preflight_is_off(ready: Harness) -> None:
    client = make_client(ready, allow_preflight=False)
    assert client.open("/me", method="OPTIONS", headers=PREFLIGHT).status_code == 401


def test_preflight_is_verified_by_default(ready: Harness) -> None:
    # Opt-in: the middleware cannot tell whether the app behind it runs a handler for it.
    assert make_client(ready).open("/me", method="OPTIONS", headers=PREFLIGHT).status_code == 401
