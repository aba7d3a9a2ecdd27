"""Choosing where each log partition starts (logic only; tests/consumer_sdk/
test_state_bootstrap_kafka.py covers the sources against the broker)."""

from __future__ import annotations

import threading
import uuid
from typing import Any, NamedTuple

import pytest
from kafka import TopicPartition
from kafka.errors import TopicAuthorizationFailedError

from consumer_sdk import _state_bootstrap
from consumer_sdk._state_bootstrap import plan_bootstrap
from revocation_events import KafkaSettings, SigningKey
from streams._records import marker_record
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


OLD_LOG = uuid.UUID("11111111-1111-4111-8111-111111111111")
NEW_LOG = uuid.UUID("22222222-2222-4222-8222-222222222222")
_STATE = f"{_LOG}.state"


class _Rec(NamedTuple):
    key: bytes | None
    value: bytes | None
    offset: int
    headers: list[tuple[str, bytes]] = []
    timestamp: int = 0


class _Cluster:
    """The log and its state topic: what plan_bootstrap and the state-topic load read."""

    def __init__(
        self, log_ends: dict[int, int], state: dict[int, list[_Rec]], log_id: uuid.UUID | None
    ) -> None:
        self.log_ends = log_ends
        self.state = state
        self.log_id = log_id
        self.metadata_requests = 0
        self._id: uuid.UUID | None = None
        self._position: dict[TopicPartition, int] = {}
        self._assigned: list[TopicPartition] = []

    @property
    def _cluster(self) -> _Cluster:  # kafka-python keeps topic ids there
        return self

    def topics(self) -> set[str]:
        self.metadata_requests += 1
        self._id = self.log_id
        return {_LOG, _STATE}

    def topic_id(self, topic: str) -> uuid.UUID | None:
        return self._id if topic == _LOG else None

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return set(self.state) if topic == _STATE else set(self.log_ends)

    def _bounds(self, tp: TopicPartition) -> tuple[int, int]:
        if tp.topic == _LOG:
            return 0, self.log_ends[tp.partition]
        records = self.state[tp.partition]
        return (records[0].offset, records[-1].offset + 1) if records else (0, 0)

    def end_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return {tp: self._bounds(tp)[1] for tp in tps}

    def beginning_offsets(self, tps: list[TopicPartition], timeout_ms: int) -> dict[Any, int]:
        return {tp: self._bounds(tp)[0] for tp in tps}

    def assign(self, tps: list[TopicPartition]) -> None:
        self._assigned = list(tps)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._position[tp] = offset

    def seek_to_beginning(self, *tps: TopicPartition) -> None:
        if not tps and not self._assigned:  # as kafka-python: none means all assigned
            raise ValueError("No partitions are currently assigned")
        for tp in tps:
            self._position[tp] = self._bounds(tp)[0]

    def position(self, tp: TopicPartition, timeout_ms: int) -> int:
        return self._position.get(tp, self._bounds(tp)[1])

    def poll(self, timeout_ms: int) -> dict[TopicPartition, list[_Rec]]:
        out = {}
        for tp in self._assigned:
            at = self._position.get(tp, self._bounds(tp)[1])
            batch = [r for r in self.state[tp.partition] if r.offset >= at][:100]
            if batch:
                out[tp] = batch
                self._position[tp] = batch[-1].offset + 1
        return out


class _Sink:
    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    def record(self, value: bytes | None, headers: Any, *, timestamp_ms: int | None = None) -> None:
        self.values.append(value)

    def tick(self) -> None:
        pass


def _state_partition(p: int, rules: int, marker: int, topic_id: uuid.UUID | None) -> list[_Rec]:
    """``rules`` rule records of state partition ``p``, then its marker for log offset
    ``marker`` naming ``topic_id``."""
    out = [_Rec(f"jti:{p}-{i}".encode(), f"rule {p}-{i}".encode(), i) for i in range(rules)]
    m = marker_record(_LOG, p, marker, topic_id=topic_id)
    return [*out, _Rec(m.key, m.value, rules)]


def _plan(cluster: _Cluster, sink: _Sink) -> Any:
    tps = {p: TopicPartition(_LOG, p) for p in sorted(cluster.log_ends)}
    return plan_bootstrap(
        cluster,
        settings(bootstrap="state", kafka=KafkaSettings(topic=_LOG)),
        sink,  # type: ignore[arg-type]
        tps,
        list(tps.values()),
        stop=threading.Event(),
    )


@pytest.mark.parametrize(
    ("written_for", "log_now", "refused"),
    [
        (NEW_LOG, NEW_LOG, None),
        (OLD_LOG, NEW_LOG, "other_incarnation"),
        (None, NEW_LOG, "no_topic_id"),  # written before markers named the incarnation
        (NEW_LOG, None, "no_topic_id"),
        (None, None, None),  # a broker without topic ids: the offset checks only
    ],
    ids=["same-log", "recreated-log", "marker-without-id", "log-without-id", "no-ids"],
)
def test_a_state_partition_of_another_incarnation_of_the_log_is_not_used(
    written_for: uuid.UUID | None,
    log_now: uuid.UUID | None,
    refused: str | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The log deleted and recreated under the same name, the state topic left, and the new
    log longer than the old marker: the SDK resumed the new log after the old marker,
    skipping its records up to there (revocations missed), and loaded the old log's rules."""
    cluster = _Cluster(
        {0: 500, 1: 500},
        {0: _state_partition(0, 3, 40, written_for), 1: _state_partition(1, 2, 60, NEW_LOG)},
        log_now,
    )
    sink = _Sink()
    plan = _plan(cluster, sink)
    partition_1 = "log" if log_now is None else "state"
    if refused is None:
        assert plan.starts[0] == 41
        assert plan.stats["partitions"] == {0: "state", 1: partition_1}
        assert plan.stats["state_refused"] == ({} if log_now else {"no_topic_id": 1})
    else:
        assert 0 not in plan.starts, "resumed the new log after the old marker"
        assert not any(v and v.startswith(b"rule 0-") for v in sink.values), "old rules loaded"
        assert plan.stats["partitions"][0] == "log"
        assert plan.stats["state_refused"] == {refused: 1 if log_now else 2}
        assert f"state topic marker of log partition 0 refused ({refused})" in caplog.text
    if log_now is not None:
        assert plan.starts[1] == 61
        assert b"rule 1-0" in sink.values
    assert cluster.metadata_requests == 1, "the log's id is asked once per bootstrap"


def test_the_last_marker_is_found_far_from_the_end_of_a_state_partition() -> None:
    """Tombstones written after the last marker (an idle log whose rules expire) push it
    back beyond the first window read from the end."""
    rules = _state_partition(0, 10, 99, OLD_LOG)
    tombstones = [_Rec(f"jti:t{i}".encode(), None, 11 + i) for i in range(3000)]
    cluster = _Cluster({0: 500}, {0: [*rules, *tombstones]}, NEW_LOG)
    sink = _Sink()
    plan = _plan(cluster, sink)
    assert (plan.starts, sink.values) == ({}, [])
    assert plan.stats["state_refused"] == {"other_incarnation": 1}
