"""What every demo service shares: one SDK client per process, configured from the
environment, and a readiness answer (200 once the SDK has replayed the topic)."""

from __future__ import annotations

import os
from typing import Any

from consumer_sdk import DataSourceState, Revocast

__all__ = ["SERVICE", "health", "revocast", "whoami"]

SERVICE = os.environ.get("REVOCAST_SERVICE_NAME", "service")
revocast = Revocast.from_env()


def health() -> tuple[int, dict[str, Any]]:
    status = revocast.status
    ready = status.state is DataSourceState.VALID
    return (200 if ready else 503), {"service": SERVICE, "state": status.state.value}


def whoami(claims: dict[str, Any], framework: str) -> dict[str, Any]:
    return {"service": SERVICE, "framework": framework, "sub": claims["sub"], "pid": os.getpid()}
