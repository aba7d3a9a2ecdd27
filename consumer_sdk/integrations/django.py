"""Django middleware: verify the bearer token of every request.

    # settings.py
    MIDDLEWARE = [..., "consumer_sdk.integrations.django.RevocastDjangoMiddleware", ...]
    REVOCAST_CLIENT = "myproject.auth.revocast"      # dotted path to a Revocast instance,
                                                      # or to a function returning one
    REVOCAST_EXEMPT_PATHS = ["/healthz"]              # optional
    REVOCAST_ALLOW_PREFLIGHT = True                   # optional (default), see below

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

CORS: a browser's preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``,
without ``Authorization``: browsers send preflights without credentials) passes this middleware
unverified (``REVOCAST_ALLOW_PREFLIGHT``, or the ``allow_preflight`` argument, default on), so a
CORS middleware listed after it (django-cors-headers) can answer it. It never reaches a view:
Django function views accept every method, so one that does not check would otherwise run
without a token. If nothing answers the preflight before the view, it is refused as without
the setting (401). A plain ``OPTIONS``, or one carrying ``Authorization``, is verified as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import (
    NO_TOKEN,
    Rejection,
    authenticate,
    environ_header,
    exempt_set,
    is_exempt,
    is_preflight,
)

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


_PREFLIGHT_ATTR = "_revocast_preflight"
"""Marks a request let through as a preflight, for :meth:`process_view` to stop at the view."""


class RevocastDjangoMiddleware:
    """Sets ``request.revocast_claims``, or answers 401 / 400 / 503 without calling the view.

    ``allow_preflight``: ``None`` (default) reads ``REVOCAST_ALLOW_PREFLIGHT`` (default
    ``True``); see the module's notes on CORS.
    """

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponse],
        revocast: Revocast | None = None,
        *,
        allow_preflight: bool | None = None,
    ) -> None:
        self.get_response = get_response
        self._revocast = revocast
        self._from_settings: Revocast | None = None
        try:
            self.exempt_paths = exempt_set(getattr(settings, "REVOCAST_EXEMPT_PATHS", ()))
        except TypeError as exc:
            raise ImproperlyConfigured(f"REVOCAST_EXEMPT_PATHS: {exc}") from None
        if allow_preflight is None:
            allow_preflight = getattr(settings, "REVOCAST_ALLOW_PREFLIGHT", True)
            if not isinstance(allow_preflight, bool):  # "False" would be true
                raise ImproperlyConfigured(
                    f"REVOCAST_ALLOW_PREFLIGHT must be True or False, not {allow_preflight!r}"
                )
        self.allow_preflight = allow_preflight

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
        if self.allow_preflight and is_preflight(
            request.META.get("REQUEST_METHOD", ""), environ_header(request.META)
        ):
            setattr(request, _PREFLIGHT_ATTR, True)
            return self.get_response(request)
        header = request.META.get("HTTP_AUTHORIZATION")
        result = authenticate(self.revocast, [] if header is None else [header])
        if isinstance(result, Rejection):
            return _response(result)
        request.revocast_claims = result  # type: ignore[attr-defined]
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> HttpResponse | None:
        """Refuse a preflight that nothing answered before the view, as if it were not one."""
        if not getattr(request, _PREFLIGHT_ATTR, False):
            return None
        return _response(NO_TOKEN)
