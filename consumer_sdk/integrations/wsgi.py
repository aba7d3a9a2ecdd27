"""WSGI middleware: the same checks and responses as the ASGI middleware, for any WSGI app.

    from consumer_sdk.integrations.wsgi import RevocastWSGIMiddleware

    app.wsgi_app = RevocastWSGIMiddleware(app.wsgi_app, rc, exempt_paths=("/healthz",))

    claims = environ["revocast.claims"]   # in the app

Servers join repeated ``Authorization`` headers with a comma (CGI), which makes the value
malformed, so two headers are refused with 400 as in the ASGI middleware. Exempt paths match
``PATH_INFO``, the path below the app's mount point.

Apache mod_wsgi drops the ``Authorization`` header unless ``WSGIPassAuthorization On`` is set:
without it every request is answered 401 (no token).

Under gunicorn with ``--preload``, create the :class:`~consumer_sdk.Revocast` client in the
master: each worker restarts its sync thread on its first request (see the SDK's fork notes).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from types import TracebackType
from typing import Any, Protocol

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import (
    Claims,
    Rejection,
    authenticate,
    environ_header,
    exempt_set,
    is_exempt,
    is_preflight,
)

__all__ = ["CLAIMS_ENVIRON_KEY", "RevocastWSGIMiddleware"]

CLAIMS_ENVIRON_KEY = "revocast.claims"
"""Key of the verified claims in the WSGI ``environ``."""

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class StartResponse(Protocol):
    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: ExcInfo | None = ...,
        /,
    ) -> Callable[[bytes], object]: ...


WSGIApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_REASONS = {400: "Bad Request", 401: "Unauthorized", 503: "Service Unavailable"}


def rejection_response(rejection: Rejection, start_response: StartResponse) -> list[bytes]:
    """Start ``rejection`` as a WSGI response and return its body."""
    body = rejection.body
    headers = [*rejection.headers, ("content-length", str(len(body)))]
    start_response(f"{rejection.status} {_REASONS[rejection.status]}", headers)
    return [body]


class RevocastWSGIMiddleware:
    """Verifies the bearer token of every request before the wrapped WSGI app sees it.

    ``on_claims(claims, environ)`` runs after a token is accepted; raise a
    :class:`jwt.InvalidTokenError` there to refuse it (401 ``invalid_token``). A plain function:
    an ``async`` one raises :class:`TypeError`, as nothing here would run its check.
    ``allow_preflight`` (default off): a CORS preflight (``OPTIONS`` with ``Origin`` and
    ``Access-Control-Request-Method``, without ``Authorization``: browsers send preflights
    without credentials) goes to the app unverified and without claims, for a CORS layer
    inside to answer. A plain ``OPTIONS``, or one carrying ``Authorization``, is verified as
    usual. The app is called as is, so a handler that itself accepts ``OPTIONS`` runs for a
    preflight without a token. This middleware cannot tell which will answer, so it is opt-in
    (fail safe): turn it on when a CORS layer inside answers preflights and nothing does more
    for an ``OPTIONS`` than answer it (Django function views accept every method: use
    :mod:`.django`'s middleware, which never lets a preflight reach a view).
    """

    def __init__(
        self,
        app: WSGIApp,
        revocast: Revocast,
        *,
        exempt_paths: Collection[str] = (),
        on_claims: Callable[[Claims, Environ], object] | None = None,
        allow_preflight: bool = False,
    ) -> None:
        self.app = app
        self.revocast = revocast
        self.exempt_paths = exempt_set(exempt_paths)
        self.on_claims = on_claims
        self.allow_preflight = allow_preflight

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if is_exempt(environ.get("PATH_INFO", ""), self.exempt_paths):
            return self.app(environ, start_response)
        if self.allow_preflight and is_preflight(
            environ.get("REQUEST_METHOD", ""), environ_header(environ)
        ):
            environ.pop(CLAIMS_ENVIRON_KEY, None)
            return self.app(environ, start_response)
        header = environ.get("HTTP_AUTHORIZATION")
        hook = self.on_claims
        result = authenticate(
            self.revocast,
            [] if header is None else [header],
            None if hook is None else lambda claims: hook(claims, environ),
        )
        if isinstance(result, Rejection):
            return rejection_response(result, start_response)
        environ[CLAIMS_ENVIRON_KEY] = result
        return self.app(environ, start_response)
