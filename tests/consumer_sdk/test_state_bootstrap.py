"""Choosing where each log partition starts (logic only; tests/consumer_sdk/
test_state_bootstrap_kafka.py covers the sources against the broker)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kafka import TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from consumer_sdk import _state_bootstrap
from consumer_sdk._state_bootstrap import plan_bootstrap
from revocation_events import SigningKey
from tests.consumer_sdk._helpers import settings

_LOG = "revs"


class _Consumer:
    """The calls plan_bootstrap makes on the log consumer itself."""

    def __init__(self) -> None:
        self.assigned: list[TopicPartition] = []

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return dict.fromkeys(tps, 10)

    def beginning_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return dict.fromkeys(tps, 0)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)


def _denied(*args: Any, **kwargs: Any) -> Any:
    raise TopicAuthorizationFailedError("not authorized")


def test_sources_the_service_may_not_read_are_skipped_for_the_log(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An ACL that lets the service read the log only: the error was raised out of the
    bootstrap and retried forever, so the service never became ready (refusing every token)
    although a log replay was possible."""
    monkeypatch.setattr(_state_bootstrap, "load_snapshots", _denied)
    monkeypatch.setattr(_state_bootstrap, "load_state_topic", _denied)

    consumer = _Consumer()
    tps = {p: TopicPartition(_LOG, p) for p in range(2)}
    snapshot_key = SigningKey.hmac("snap", b"s" * 32).verification_key()
    plan = plan_bootstrap(
        consumer,
        settings(bootstrap="state", snapshot_keys=(snapshot_key,)),
        sink=None,  # type: ignore[arg-type]  # the loaders are replaced
        tps=tps,
        new=list(tps.values()),
        stop=threading.Event(),
    )
    assert plan.starts == {}
    assert plan.rest == list(tps.values()), "every partition replays the log"
    assert plan.stats["mode"] == "log"
    assert "snapshot not readable" in plan.stats["snapshot"]["why"]
    assert "state topic not readable" in plan.stats["fallback"]
    assert consumer.assigned == list(tps.values())
    assert "grant this service Read" in caplog.text
