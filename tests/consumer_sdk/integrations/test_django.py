"""RevocastDjangoMiddleware under Django's own test client.

Django is configured once, here, for this module: its URLconf is this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import django
import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import Client, RequestFactory, override_settings
from django.urls import path

from consumer_sdk import Revocast
from consumer_sdk.integrations.django import RevocastDjangoMiddleware, set_revocast
from tests.consumer_sdk.integrations._cases import (
    CASES,
    NOT_PREFLIGHTS,
    ORIGIN,
    PREFLIGHT,
    Case,
    Harness,
    Headers,
    Reply,
    case_ids,
    check,
    join_headers,
)

if TYPE_CHECKING:
    from django.test.client import _MonkeyPatchedWSGIResponse as TestResponse

MIDDLEWARE = "consumer_sdk.integrations.django.RevocastDjangoMiddleware"

if not settings.configured:
    settings.configure(
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["testserver"],
        MIDDLEWARE=[MIDDLEWARE],
        INSTALLED_APPS=[],
        SECRET_KEY="django-tests-only",
        REVOCAST_EXEMPT_PATHS=["/healthz"],
    )
    django.setup()


def me(request: HttpRequest) -> HttpResponse:
    claims = request.revocast_claims  # type: ignore[attr-defined]
    return JsonResponse({"sub": claims["sub"], "jti": claims["jti"]})


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"claims": hasattr(request, "revocast_claims")})


ran: list[str] = []


def listing(request: HttpRequest) -> HttpResponse:
    """A view that relies on the middleware alone, and answers every method."""
    ran.append("listing")
    return JsonResponse({"users": ["alice", "bob"]})


urlpatterns = [path("me", me), path("healthz", healthz), path("listing", listing)]

_from_settings: Revocast | None = None


def client_from_settings() -> Revocast:
    """What ``REVOCAST_CLIENT`` names in the settings tests."""
    assert _from_settings is not None
    return _from_settings


@pytest.fixture
def configured(harness: Harness) -> Iterator[Harness]:
    set_revocast(harness.revocast)
    try:
        yield harness
    finally:
        set_revocast(None)


def to_reply(response: TestResponse) -> Reply:
    return Reply(
        response.status_code,
        {k.lower(): v for k, v in response.headers.items()},
        response.json(),
        response.content,
    )


def get(path_: str, headers: Headers | None = None) -> TestResponse:
    """GET through the whole stack; repeated headers joined as a WSGI server joins them."""
    return Client().get(path_, headers=join_headers(headers or []))


@pytest.mark.parametrize("case", CASES, ids=case_ids())
def test_django_middleware_answers_every_case(case: Case, configured: Harness) -> None:
    def send(headers: Headers) -> Reply:
        return to_reply(get("/me", headers))

    check(case, configured, send)


def test_exempt_paths_come_from_the_settings(configured: Harness) -> None:
    configured.source.set_ready()
    assert get("/healthz").json() == {"claims": False}


def test_client_named_in_the_settings_is_used(ready: Harness) -> None:
    global _from_settings
    _from_settings = ready.revocast
    try:
        with override_settings(REVOCAST_CLIENT=f"{__name__}.client_from_settings"):
            assert get("/me", ready.bearer()).status_code == 200
            assert get("/me").status_code == 401
    finally:
        _from_settings = None


def test_without_a_client_the_middleware_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="REVOCAST_CLIENT"):
        get("/me")


def test_client_setting_naming_something_else_is_improperly_configured() -> None:
    with (
        override_settings(REVOCAST_CLIENT=f"{__name__}.MIDDLEWARE"),
        pytest.raises(ImproperlyConfigured, match="is not a Revocast client"),
    ):
        get("/me")


def test_middleware_given_its_own_client_needs_no_configuration(ready: Harness) -> None:
    middleware = RevocastDjangoMiddleware(me, revocast=ready.revocast)
    request = RequestFactory().get("/me", headers=dict(ready.bearer()))
    response = middleware(request)
    assert response.status_code == 200
    assert request.revocast_claims["sub"] == ready.sub  # type: ignore[attr-defined]


def test_one_string_as_exempt_paths_setting_is_improperly_configured(ready: Harness) -> None:
    # Iterated, "/healthz" is its characters: "/" among them exempted every path.
    with (
        override_settings(REVOCAST_EXEMPT_PATHS="/healthz"),
        pytest.raises(ImproperlyConfigured, match="REVOCAST_EXEMPT_PATHS"),
    ):
        RevocastDjangoMiddleware(me, revocast=ready.revocast)


class PreflightAnswerer:
    """What django-cors-headers' middleware does with a preflight: answers it, before any
    view, when listed after the Revocast middleware."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS" and "access-control-request-method" in request.headers:
            response = HttpResponse()
            response["Access-Control-Allow-Origin"] = request.headers["origin"]
            return response
        return self.get_response(request)


WITH_CORS = [MIDDLEWARE, f"{__name__}.PreflightAnswerer"]


def options(path_: str, headers: Headers) -> TestResponse:
    return Client().options(path_, headers=dict(headers))


def test_cors_preflight_reaches_a_cors_middleware_listed_after_it(configured: Harness) -> None:
    configured.source.set_ready()
    with override_settings(MIDDLEWARE=WITH_CORS):
        response = options("/me", PREFLIGHT)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ORIGIN


def test_preflight_that_nothing_answers_never_reaches_a_view(configured: Harness) -> None:
    """Django function views accept every method: one that does not check would run for an
    unauthenticated preflight and return its data."""
    configured.source.set_ready()
    ran.clear()
    response = options("/listing", PREFLIGHT)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert ran == []
    assert options("/listing", configured.bearer()).status_code == 200
    assert ran == ["listing"]


@pytest.mark.parametrize("headers", NOT_PREFLIGHTS.values(), ids=NOT_PREFLIGHTS.keys())
def test_options_that_is_not_a_genuine_preflight_is_verified(
    configured: Harness, headers: Headers
) -> None:
    configured.source.set_ready()
    with override_settings(MIDDLEWARE=WITH_CORS):
        assert options("/me", headers).status_code == 401


def test_preflight_is_verified_when_the_setting_is_off(configured: Harness) -> None:
    configured.source.set_ready()
    with override_settings(MIDDLEWARE=WITH_CORS, REVOCAST_ALLOW_PREFLIGHT=False):
        assert options("/me", PREFLIGHT).status_code == 401


def test_preflight_is_verified_when_the_argument_is_off(ready: Harness) -> None:
    middleware = RevocastDjangoMiddleware(
        PreflightAnswerer(me), revocast=ready.revocast, allow_preflight=False
    )
    request = RequestFactory().options("/me", headers=dict(PREFLIGHT))
    assert middleware(request).status_code == 401


def test_allow_preflight_setting_that_is_not_a_bool_is_improperly_configured(
    ready: Harness,
) -> None:
    # "False" is a true value: taken as is, it would let preflights through.
    with (
        override_settings(REVOCAST_ALLOW_PREFLIGHT="False"),
        pytest.raises(ImproperlyConfigured, match="REVOCAST_ALLOW_PREFLIGHT"),
    ):
        RevocastDjangoMiddleware(me, revocast=ready.revocast)
