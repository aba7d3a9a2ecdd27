"""gunicorn settings for the demo's forked workers (``--config python:<this module>``).

With ``--preload`` the SDK is built in the master and restarts in each worker after the fork;
a worker that accepted connections before its replay finished would answer 503 (fail-closed)
while its siblings answer 200. Each worker therefore waits for its own SDK to be ready before
it serves, which is what a deployment behind a load balancer wants too.
"""

from __future__ import annotations

from typing import Any

READY_TIMEOUT_S = 60.0


def post_worker_init(worker: Any) -> None:
    from revocast.demo.apps._sdk import revocast

    if not revocast.wait_until_ready(READY_TIMEOUT_S):
        worker.log.warning("revocation state not ready after %.0fs: serving 503s", READY_TIMEOUT_S)
