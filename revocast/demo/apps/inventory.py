"""``inventory``: a Flask app behind the WSGI middleware, served by gunicorn with forked
workers (``--preload``: the SDK is created before the fork and restarts in each worker)."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from consumer_sdk.integrations.wsgi import RevocastWSGIMiddleware
from revocast.demo.apps._sdk import health, revocast, whoami

flask_app = Flask("inventory")


@flask_app.get("/whoami")
def whoami_endpoint() -> Any:
    return jsonify(whoami(request.environ["revocast.claims"], "flask"))


@flask_app.get("/healthz")
def healthz() -> Any:
    code, body = health()
    return jsonify(body), code


app = RevocastWSGIMiddleware(flask_app, revocast, exempt_paths=("/healthz",))
