"""Prometheus metrics of the consumer SDK, with several clients in one process."""

from __future__ import annotations

import logging
import uuid

import prometheus_client
import pytest

from consumer_sdk import Revocast, _metrics
from consumer_sdk.testing import InMemorySource
from tests.consumer_sdk._helpers import FakeClock, settings


def _status(service: str) -> dict[str, float | None]:
    return {
        state: prometheus_client.REGISTRY.get_sample_value(
            "revocast_source_status", {"service": service, "state": state}
        )
        for state in ("initializing", "valid", "interrupted", "off")
    }


def test_status_gauge_counts_each_client_of_a_service_in_its_own_state() -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    clock = FakeClock()
    live_src, old_src = InMemorySource(), InMemorySource()
    old = Revocast(settings(service_name=service), source=old_src, clock=clock)
    old_src.set_ready()
    live = Revocast(settings(service_name=service), source=live_src, clock=clock)
    live_src.set_ready()
    live_src.interrupt("broker gone")
    old.close()  # a replaced client closed after its successor started
    try:
        assert _status(service) == {"initializing": 0, "valid": 0, "interrupted": 1, "off": 1}
    finally:
        live.close()
    assert _status(service) == {"initializing": 0, "valid": 0, "interrupted": 0, "off": 2}


def test_a_single_client_reports_one_for_its_current_status() -> None:
    service = f"svc-{uuid.uuid4().hex[:8]}"
    src = InMemorySource()
    rc = Revocast(settings(service_name=service), source=src, clock=FakeClock())
    assert _status(service) == {"initializing": 1, "valid": 0, "interrupted": 0, "off": 0}
    src.set_ready()
    assert _status(service) == {"initializing": 0, "valid": 1, "interrupted": 0, "off": 0}
    rc.close()
    assert _status(service) == {"initializing": 0, "valid": 0, "interrupted": 0, "off": 1}


def test_a_metric_name_already_registered_turns_metrics_off_not_the_client(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = prometheus_client.CollectorRegistry()
    app_gauge = prometheus_client.Gauge(
        "revocast_state_entries", "the app's own", registry=registry
    )
    monkeypatch.setattr(prometheus_client, "REGISTRY", registry)
    monkeypatch.setattr(_metrics, "_collectors", {})
    monkeypatch.setattr(_metrics, "_refused", [])
    with caplog.at_level(logging.WARNING, logger="consumer_sdk.metrics"):
        first = Revocast(settings(), source=InMemorySource(), clock=FakeClock())
        second = Revocast(settings(), source=InMemorySource(), clock=FakeClock())
    try:
        assert not first.metrics.enabled
        assert not second.metrics.enabled
        assert len(caplog.records) == 1
        assert "Duplicated timeseries" in caplog.records[0].getMessage()
        # Nothing half-registered next to the application's own metric.
        names = {metric.name for metric in registry.collect()}
        assert names == {"revocast_state_entries"}
        app_gauge.set(3)
        assert registry.get_sample_value("revocast_state_entries") == 3
    finally:
        first.close()
        second.close()
