"""RevocastDjangoMiddleware under Django's own test client.

Django is configured once, here, for this module: its URLconf is this module.
"""

from __future__ import annotations

from collections.abc import Iterator
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


urlpatterns = [path("me", me), path("healthz", healthz)]

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
