"""Django middleware: verify the bearer token of every request.

    # settings.py
    MIDDLEWARE = [..., "consumer_sdk.integrations.django.RevocastDjangoMiddleware", ...]
    REVOCAST_CLIENT = "myproject.auth.revocast"      # dotted path to a Revocast instance,
                                                      # or to a function returning one
    REVOCAST_EXEMPT_PATHS = ["/healthz"]              # optional

    # or, instead of REVOCAST_CLIENT, at startup (e.g. in AppConfig.ready):
    from consumer_sdk.integrations.django import set_revocast
    set_revocast(rc)

    def me(request):
        return JsonResponse({"sub": request.revocast_claims["sub"]})

:func:`set_revocast` wins over ``REVOCAST_CLIENT``. Subclass the middleware and pass
``revocast=`` to ``super().__init__`` to give it a client without any global. The client is
looked up on the first request, not at startup, so it may be created after the middleware.
The middleware is synchronous (Django runs it in a thread under ASGI); verification itself is
CPU-only and short.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import Rejection, authenticate, exempt_set, is_exempt

__all__ = ["RevocastDjangoMiddleware", "set_revocast"]

_configured: Revocast | None = None


def set_revocast(revocast: Revocast | None) -> None:
    """Give every :class:`RevocastDjangoMiddleware` without its own client this one
    (``None`` clears it)."""
    global _configured
    _configured = revocast


def _from_settings() -> Revocast:
    path = getattr(settings, "REVOCAST_CLIENT", None)
    if not path:
        raise ImproperlyConfigured(
            "RevocastDjangoMiddleware needs a client: set REVOCAST_CLIENT to the dotted path of "
            "a Revocast instance (or of a function returning one), or call set_revocast(rc)"
        )
    try:
        found: Any = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(f"REVOCAST_CLIENT={path!r}: {exc}") from exc
    if not isinstance(found, Revocast) and callable(found):
        found = found()
    if not isinstance(found, Revocast):
        raise ImproperlyConfigured(f"REVOCAST_CLIENT={path!r} is not a Revocast client")
    return found


def _response(rejection: Rejection) -> HttpResponse:
    response = HttpResponse(rejection.body, status=rejection.status)
    for name, value in rejection.headers:
        response[name] = value
    return response


class RevocastDjangoMiddleware:
    """Sets ``request.revocast_claims``, or answers 401 / 400 / 503 without calling the view."""

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponse],
        revocast: Revocast | None = None,
    ) -> None:
        self.get_response = get_response
        self._revocast = revocast
        self._from_settings: Revocast | None = None
        try:
            self.exempt_paths = exempt_set(getattr(settings, "REVOCAST_EXEMPT_PATHS", ()))
        except TypeError as exc:
            raise ImproperlyConfigured(f"REVOCAST_EXEMPT_PATHS: {exc}") from None

    @property
    def revocast(self) -> Revocast:
        if self._revocast is not None:
            return self._revocast
        if _configured is not None:
            return _configured
        if self._from_settings is None:
            self._from_settings = _from_settings()
        return self._from_settings

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_exempt(request.path_info, self.exempt_paths):
            return self.get_response(request)
        header = request.META.get("HTTP_AUTHORIZATION")
        result = authenticate(self.revocast, [] if header is None else [header])
        if isinstance(result, Rejection):
            return _response(result)
        request.revocast_claims = result  # type: ignore[attr-defined]
        return self.get_response(request)
