"""A Flask extension: verify every request (default), or only the views you decorate.

    from consumer_sdk.integrations.flask import RevocastFlask, require_token

    revocast_ext = RevocastFlask(app, rc, exempt_paths=("/healthz",))   # guards every view
    # or, app factory: revocast_ext = RevocastFlask(); revocast_ext.init_app(app, rc)

    @app.get("/me")
    def me():
        return {"sub": g.revocast_claims["sub"]}

With ``protect_all=False`` no guard is installed and only views decorated with
:func:`require_token` are verified. Claims land on ``flask.g.revocast_claims``; a view behind
both the guard and the decorator is verified once. Refusals are the JSON responses of every
other adapter, returned from a ``before_request`` function (so ``after_request`` hooks still run).

CORS: the guard lets a browser's preflight through (``allow_preflight``) when Flask answers it
itself, so an extension such as flask-cors's ``CORS(app)`` can add its headers to that answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import ParamSpec

from flask import Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue

from consumer_sdk._client import Revocast
from consumer_sdk.integrations._bearer import (
    Rejection,
    authenticate,
    environ_header,
    exempt_set,
    is_exempt,
    is_preflight,
)

__all__ = ["EXTENSION_KEY", "RevocastFlask", "require_token"]

EXTENSION_KEY = "revocast"
"""Key of this extension's per-app state in ``app.extensions``."""

_G_KEY = "revocast_claims"
_G_ENVIRON = "_revocast_environ"
"""The WSGI environ of the request the claims on ``g`` were verified for: ``g`` lives on the
app context, which a request reuses when one is already pushed (``app.app_context().push()`` at
import time under a single-threaded server), so ``g`` alone is not per request."""

P = ParamSpec("P")


@dataclass(frozen=True, slots=True)
class _AppState:
    revocast: Revocast
    exempt_paths: frozenset[str]
    allow_preflight: bool


def _response(rejection: Rejection) -> Response:
    headers = [(k, v) for k, v in rejection.headers if k != "content-type"]
    return Response(
        rejection.body, status=rejection.status, headers=headers, mimetype="application/json"
    )


def _verify_request() -> Response | None:
    """Put the claims on ``g``, or return the refusal. Verifies at most once per request."""
    environ = request.environ
    if _G_KEY in g and g.get(_G_ENVIRON) is environ:
        return None
    _forget_claims()
    state: _AppState = current_app.extensions[EXTENSION_KEY]
    header = environ.get("HTTP_AUTHORIZATION")
    result = authenticate(state.revocast, [] if header is None else [header])
    if isinstance(result, Rejection):
        return _response(result)
    setattr(g, _G_KEY, result)
    setattr(g, _G_ENVIRON, environ)
    return None


def _answered_without_view() -> bool:
    """Whether Flask answers this ``OPTIONS`` without calling a view: its automatic ``OPTIONS``
    response, or a routing error (404, 405, redirect). A view that lists ``OPTIONS`` itself
    (or is wrapped so, like flask-cors's ``@cross_origin``) would run for it."""
    rule = request.url_rule
    return rule is None or bool(getattr(rule, "provide_automatic_options", False))


def _forget_claims(exc: BaseException | None = None) -> None:
    g.pop(_G_KEY, None)
    g.pop(_G_ENVIRON, None)


class RevocastFlask:
    """The extension. ``protect_all`` installs a ``before_request`` guard on the whole app
    (paths in ``exempt_paths`` excepted: exact matches, or prefixes ending in ``/``; ``/`` is
    the index page only).

    ``allow_preflight`` (default on): the guard lets a CORS preflight (``OPTIONS`` with
    ``Origin`` and ``Access-Control-Request-Method``, without ``Authorization``: browsers send
    preflights without credentials) through unverified, with no claims on ``g``, when no view
    would run for it: Flask's automatic ``OPTIONS`` answer, or a routing error. A preflight to a
    view that handles ``OPTIONS`` itself is verified (refused: it carries no token), so no view
    ever runs without a token; so is a plain ``OPTIONS``, or one carrying ``Authorization``.
    :func:`require_token` verifies every request it sees.
    """

    def __init__(
        self,
        app: Flask | None = None,
        revocast: Revocast | None = None,
        *,
        protect_all: bool = True,
        exempt_paths: Collection[str] = (),
        allow_preflight: bool = True,
    ) -> None:
        self.protect_all = protect_all
        self.exempt_paths = exempt_set(exempt_paths)
        self.allow_preflight = allow_preflight
        if app is not None:
            if revocast is None:
                raise TypeError("RevocastFlask(app, revocast): give the Revocast client too")
            self.init_app(app, revocast)

    def init_app(self, app: Flask, revocast: Revocast) -> None:
        app.extensions[EXTENSION_KEY] = _AppState(revocast, self.exempt_paths, self.allow_preflight)
        app.teardown_request(_forget_claims)  # not on to the next request sharing this ``g``
        if self.protect_all:
            app.before_request(self._guard)

    def _guard(self) -> Response | None:
        state: _AppState = current_app.extensions[EXTENSION_KEY]
        if is_exempt(request.path, state.exempt_paths):
            return None
        if (
            state.allow_preflight
            and is_preflight(request.method, environ_header(request.environ))
            and _answered_without_view()
        ):
            _forget_claims()
            return None
        return _verify_request()


def require_token(view: Callable[P, ResponseReturnValue]) -> Callable[P, ResponseReturnValue]:
    """Refuse the view unless the request carries a valid, unrevoked bearer token."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> ResponseReturnValue:
        refused = _verify_request()
        if refused is not None:
            return refused
        return current_app.ensure_sync(view)(*args, **kwargs)  # type: ignore[no-any-return]

    return wrapper
