"""Framework drop-ins for the consumer SDK: one public module per framework.

Import the module for your framework; importing :mod:`consumer_sdk` (or this package) never
imports a web framework.

* :mod:`.asgi`: ``RevocastMiddleware`` (Starlette, FastAPI, any ASGI app); claims on
  ``request.state.revocast_claims`` (``scope["state"]["revocast_claims"]``).
* :mod:`.fastapi`: the dependency ``RevocastBearer(rc)`` returning the claims, usable without
  the middleware; ``verified_claims`` reads what the middleware verified.
* :mod:`.wsgi`: ``RevocastWSGIMiddleware``; claims in ``environ["revocast.claims"]``.
* :mod:`.flask`: the ``RevocastFlask`` extension (guard every view, or ``@require_token``);
  claims on ``flask.g.revocast_claims``.
* :mod:`.django`: ``RevocastDjangoMiddleware``; claims on ``request.revocast_claims``.
* :mod:`.health`: readiness (200 while ``verify()`` serves a known state, VALID or INTERRUPTED
  within ``max_staleness``, with its JWT keys loaded; else 503) and Prometheus ``/metrics``
  endpoints, as ASGI apps, WSGI apps and plain functions.

Every adapter answers the same way (RFC 6750):

* no ``Authorization`` header, or another scheme (``Basic …``): **401**,
  ``WWW-Authenticate: Bearer`` with no error code (§3.1: the client did not try bearer auth);
* a malformed bearer header (no token, two tokens, characters outside ``b64token``, several
  ``Authorization`` headers): **400**, ``error="invalid_request"``;
* a token that is expired, revoked or otherwise invalid: **401**, ``error="invalid_token"`` and an
  ``error_description`` of ``token expired``, ``token revoked (<rule>)`` or ``invalid token``.
  Nothing from the token (jti, sub, kid…) is ever echoed back;
* a valid token while the revocation state cannot be trusted (the SDK is not ready yet, or has
  been interrupted for longer than ``max_staleness``; fail-closed policy): **503** with
  ``Retry-After``.

Bodies are JSON: ``{"error": ..., "error_description": ...}``.

A CORS preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``, without
``Authorization``) passes the Flask and Django guards unverified and without claims, so a CORS
layer behind them can answer it (they never let it run a view); their ``allow_preflight``
keyword (Django: ``REVOCAST_ALLOW_PREFLIGHT``) turns this off. The generic ASGI and WSGI
middlewares cannot tell whether a handler behind them runs for the preflight, so there it is
opt-in (``allow_preflight=True``). Each module says what may still see the preflight.
"""
