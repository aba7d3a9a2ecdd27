"""A hand-built :class:`~revocast.ops.Instance` for report and check tests: a VALID instance
heard a second before ``now``, in its status for 5 minutes; ``fields`` override."""

from __future__ import annotations

from typing import Any

from revocast.ops import Instance


def hand_instance(name: str = "i1", *, now: float, **fields: Any) -> Instance:
    values: dict[str, Any] = {
        "service": "orders",
        "instance": name,
        "host": "web-1",
        "pid": 7,
        "status": "valid",
        "lag": 0,
        "entries": 0,
        "sent_at": now - 1,
        "interval": 10.0,
        "failures": 0,
        "stale": False,
        "heard_at": now - 1,
        "status_since": now - 300,
        "reported_lag": 0,
        "status_since_reported": True,
    }
    return Instance(**{**values, **fields})
