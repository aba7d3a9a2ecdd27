"""A Flask service for gunicorn ``--preload``: the SDK is created (and caught up) in the
master, before the workers fork; each worker then runs its own sync thread."""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, Response, g

from consumer_sdk import Revocast
from consumer_sdk.integrations.flask import RevocastFlask
from consumer_sdk.integrations.health import health_report

rc = Revocast.from_env()
if not rc.wait_until_ready(30):
    raise SystemExit(f"revocation state not ready: {rc.status}")

app = Flask(__name__)
RevocastFlask(app, rc, exempt_paths=("/healthz",))


@app.get("/whoami")
def whoami() -> dict[str, Any]:
    return {"sub": g.revocast_claims["sub"], "jti": g.revocast_claims["jti"]}


@app.get("/healthz")
def healthz() -> tuple[dict[str, Any], int]:
    code, body = health_report(rc)
    return body, code


@app.after_request
def tag_worker(response: Response) -> Response:
    # Refusals too: the test needs to know which worker refused.
    response.headers["X-Worker-Pid"] = str(os.getpid())
    return response
