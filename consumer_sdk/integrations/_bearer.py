"""What every adapter shares: reading the bearer header and mapping a refusal to a response.

The adapters differ only in how they read a header and write a response; the decision of
which status, which ``WWW-Authenticate`` challenge and which body lives here, once.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from consumer_sdk._client import Revocast
from consumer_sdk._errors import StateUnavailableError, TokenRevokedError

__all__ = [
    "NO_TOKEN",
    "RETRY_AFTER_SECONDS",
    "Claims",
    "Rejection",
    "authenticate",
    "bearer_token",
    "environ_header",
    "exempt_set",
    "is_exempt",
    "is_preflight",
    "refused",
    "rejection_for",
]

_log = logging.getLogger("consumer_sdk.integrations")

Claims = dict[str, Any]

RETRY_AFTER_SECONDS = 5
"""``Retry-After`` of a 503: about how long a replay of the topic takes at start."""

# RFC 7235 credentials: auth-scheme [ 1*SP rest ]; RFC 6750 §2.1 b64token.
_CREDENTIALS = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+)(?: +(.*))?", re.DOTALL)
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refused request: the status, the RFC 6750 error code (``None`` when the client did
    not attempt bearer authentication) and a fixed, token-free description."""

    status: int
    error: str | None
    description: str

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Response headers, ``Content-Type`` first."""
        headers = [("content-type", "application/json")]
        if self.status == 503:
            headers.append(("retry-after", str(RETRY_AFTER_SECONDS)))
        elif self.error is None:
            headers.append(("www-authenticate", "Bearer"))
        else:
            headers.append(
                (
                    "www-authenticate",
                    f'Bearer error="{self.error}", error_description="{self.description}"',
                )
            )
        return headers

    @property
    def body_dict(self) -> dict[str, str]:
        """The JSON body; ``error`` is ``"unauthorized"`` when the challenge carries none."""
        return {"error": self.error or "unauthorized", "error_description": self.description}

    @property
    def body(self) -> bytes:
        return json.dumps(self.body_dict, separators=(",", ":")).encode()


NO_TOKEN = Rejection(401, None, "bearer token required")
"""The refusal of a request that did not attempt bearer authentication."""
_UNAVAILABLE = Rejection(503, "temporarily_unavailable", "revocation state unavailable")
_EXPIRED = Rejection(401, "invalid_token", "token expired")
_INVALID = Rejection(401, "invalid_token", "invalid token")


def _malformed(why: str) -> Rejection:
    return Rejection(400, "invalid_request", why)


def bearer_token(values: Sequence[str]) -> str | Rejection:
    """The token of the ``Authorization`` header(s) ``values``, or why there is none.

    Give every ``Authorization`` header the request carried: several of them are refused
    (RFC 6750 §3.1, "more than one method"). WSGI servers join repeated headers with a comma,
    which is outside ``b64token`` and so refused too.
    """
    present = [v.strip() for v in values if v.strip()]
    if not present:
        return NO_TOKEN
    if len(present) > 1:
        return _malformed("more than one Authorization header")
    match = _CREDENTIALS.fullmatch(present[0])
    if match is None:
        return _malformed("malformed Authorization header")
    scheme, rest = match.group(1), (match.group(2) or "").strip(" ")
    if scheme.lower() != "bearer":
        return NO_TOKEN  # another scheme: the client did not try bearer auth (§3.1)
    if not rest:
        return _malformed("bearer token missing")
    if _B64TOKEN.fullmatch(rest) is None:
        return _malformed("malformed bearer token")
    return rest


def rejection_for(exc: jwt.InvalidTokenError) -> Rejection:
    """The response for a token ``verify`` refused. Never includes token contents."""
    if isinstance(exc, StateUnavailableError):
        return _UNAVAILABLE
    if isinstance(exc, TokenRevokedError):
        return Rejection(401, "invalid_token", f"token revoked ({exc.rule.value})")
    if isinstance(exc, jwt.ExpiredSignatureError):
        return _EXPIRED
    return _INVALID


def exempt_set(exempt_paths: Collection[str]) -> frozenset[str]:
    """``exempt_paths`` as a set. A lone string is refused with :class:`TypeError`: iterated,
    ``"/healthz"`` would be its characters, ``"/"`` among them, which as a prefix entry exempts
    every path and so turns verification off."""
    if isinstance(exempt_paths, str | bytes):
        raise TypeError(
            f"exempt_paths must be a collection of paths, not one string: ({exempt_paths!r},)"
        )
    return frozenset(exempt_paths)


def is_exempt(path: str, exempt_paths: Collection[str]) -> bool:
    """Whether ``path`` is served without a token: exact matches only, except entries ending
    in ``/``, which exempt every path below them. ``/healthz`` does not exempt ``/healthz/x``
    nor ``/healthzz``. ``/`` alone is exact too (the index page): as a prefix it would exempt
    every path, which is never meant (leave the middleware out instead)."""
    if path in exempt_paths:
        return True
    return any(p.endswith("/") and p != "/" and path.startswith(p) for p in exempt_paths)


HeaderLookup = Callable[[str], str | None]
"""A request header by its lower-case name, or ``None`` when the request has none."""


def is_preflight(method: str, header: HeaderLookup) -> bool:
    """Whether a request is a CORS preflight (Fetch standard, "CORS-preflight request"): an
    ``OPTIONS`` carrying ``Origin`` and ``Access-Control-Request-Method`` and no
    ``Authorization`` header. A browser never sends credentials on a preflight, so one that
    carries any is not a genuine preflight and is verified like any other request; so is a
    plain ``OPTIONS``. Methods are case-sensitive (RFC 9110 §9.1): ``options`` is not one."""
    return (
        method == "OPTIONS"
        and bool(header("origin"))
        and bool(header("access-control-request-method"))
        and header("authorization") is None
    )


def environ_header(environ: Mapping[str, Any]) -> HeaderLookup:
    """:data:`HeaderLookup` over a WSGI environ (or Django's ``request.META``)."""
    return lambda name: environ.get("HTTP_" + name.upper().replace("-", "_"))


OnClaims = Callable[[Claims], object]


def authenticate(
    revocast: Revocast, values: Sequence[str], on_claims: OnClaims | None = None
) -> Claims | Rejection:
    """Verify the request's bearer token; return its claims or the refusal.

    ``on_claims`` runs after a successful verification; raising a
    :class:`jwt.InvalidTokenError` there refuses the token like any other invalid token. It
    must be a plain function: an ``async`` one raises :class:`TypeError` (a 500), as its check
    would never run.
    """
    token = bearer_token(values)
    if isinstance(token, Rejection):
        return token
    try:
        claims = revocast.verify(token)
        if on_claims is not None:
            outcome = on_claims(claims)
            if inspect.isawaitable(outcome):
                if inspect.iscoroutine(outcome):
                    outcome.close()  # no "never awaited" warning: the error says it all
                raise TypeError(
                    "on_claims returned an awaitable: give a plain function here, an async "
                    "one's check never runs"
                )
    except jwt.InvalidTokenError as exc:
        return refused(exc)
    return claims


def refused(exc: jwt.InvalidTokenError) -> Rejection:
    """:func:`rejection_for`, logged (at debug: a refusal is routine)."""
    _log.debug("refused a bearer token: %s", exc)
    return rejection_for(exc)
