"""Prometheus metrics, if ``prometheus-client`` is installed (the ``metrics`` extra).

Without it every method is a no-op. Collectors are created once per process on the default
registry and labelled by ``service``, so several SDK instances can share them; if one of
their names is already taken there, metrics are off (one warning), the clients unaffected.
``revocast_source_status`` counts, per service and state, the instances in that state (1 for
the current state when there is one instance; a closed one counts as ``off`` until it has
been garbage-collected and a peer changes state), so one instance never hides another.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

__all__ = ["Metrics"]

try:
    import prometheus_client as _prom
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    _prom = None  # type: ignore[assignment]

_log = logging.getLogger("consumer_sdk.metrics")

_lock = threading.Lock()
_collectors: dict[str, Any] = {}
_refused: list[str] = []  # why the registry refused the collectors (then: no metrics)

_STATES = ("initializing", "valid", "interrupted", "off")
_by_service: dict[str, weakref.WeakSet[Metrics]] = {}  # the live instances; under _lock


def _shared() -> dict[str, Any]:
    with _lock:
        if not _collectors and not _refused and _prom is not None:
            _register(_prom)
        return _collectors


def _register(p: Any) -> None:
    """Register every collector on the default registry, or none: a name already taken there
    (the application's own metric, a second copy of this module) disables the SDK's metrics
    with one warning rather than failing the construction of every client."""
    made = {
        "applied": p.Counter(
            "revocast_events_applied",
            "Events that changed the state",
            ["service", "type"],
            registry=None,
        ),
        "skipped": p.Counter(
            "revocast_records_skipped",
            "Records skipped, by reason",
            ["service", "reason"],
            registry=None,
        ),
        "size": p.Gauge(
            "revocast_state_entries", "State entries by kind", ["service", "kind"], registry=None
        ),
        "last_event": p.Gauge(
            "revocast_last_event_timestamp_seconds",
            "When the last event was applied",
            ["service"],
            registry=None,
        ),
        "delay": p.Histogram(
            "revocast_propagation_delay_seconds",
            "From an event's occurred_at to its application here (live events only)",
            ["service"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60),
            registry=None,
        ),
        "status": p.Gauge(
            "revocast_source_status",
            "SDK instances in each status (1 for the current status of a single one)",
            ["service", "state"],
            registry=None,
        ),
    }
    registry = p.REGISTRY
    done: list[Any] = []
    try:
        for collector in made.values():
            registry.register(collector)
            done.append(collector)
    except ValueError as exc:
        for collector in done:
            registry.unregister(collector)
        _refused.append(str(exc))
        _log.warning("Prometheus metrics of the revocation SDK are off: %s", exc)
        return
    _collectors.update(made)


class Metrics:
    """Per-instance view of the shared collectors."""

    def __init__(self, service: str) -> None:
        self._service = service
        self._c = _shared()
        # labels() hashes and locks on every call: ~10 µs per applied event during a replay.
        self._applied: dict[str, Any] = {}
        self._delay: Any = self._c["delay"].labels(service) if self._c else None
        self._state: str | None = None
        if self._c:
            with _lock:
                _by_service.setdefault(service, weakref.WeakSet()).add(self)

    @property
    def enabled(self) -> bool:
        return bool(self._c)

    def applied(self, event_type: str, n: int = 1) -> None:
        """Count ``n`` applied events of one type (a replayed batch adds its count once)."""
        if self._c:
            child = self._applied.get(event_type)
            if child is None:
                child = self._applied[event_type] = self._c["applied"].labels(
                    self._service, event_type
                )
            child.inc(n)

    def delay(self, seconds: float) -> None:
        """Observe one live event's propagation delay (seconds since it occurred); not for
        the bootstrap replay, whose events are hours old and would bury the live figure."""
        if self._delay is not None:
            self._delay.observe(max(seconds, 0.0))

    def skipped(self, reason: str) -> None:
        if self._c:
            self._c["skipped"].labels(self._service, reason).inc()

    def last_event(self, at: float) -> None:
        if self._c:
            self._c["last_event"].labels(self._service).set(at)

    def sizes(self, sizes: Mapping[str, int]) -> None:
        if self._c:
            for kind, n in sizes.items():
                self._c["size"].labels(self._service, kind).set(n)

    def status(self, state: str) -> None:
        """Set this instance's state, and the gauge to the count of the service's instances
        in each state (setting 1/0 for this one alone would hide another one's state)."""
        if self._c:
            with _lock:
                self._state = state
                peers = [m._state for m in _by_service.get(self._service, ())]
                for s in _STATES:
                    self._c["status"].labels(self._service, s).set(peers.count(s))


def _after_fork_in_child() -> None:
    global _lock
    _lock = threading.Lock()  # a scrape in another thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)
