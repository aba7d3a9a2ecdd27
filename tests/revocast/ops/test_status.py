"""``collect_status``: what ``revocast status`` reports about the SDK heartbeats on the topic
(which every service may write to), and the report as JSON."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from revocast.ops import (
    CheckThresholds,
    Instance,
    LogStatus,
    Severity,
    StateStatus,
    StatusReport,
    check_status,
    collect_status,
)
from revocation_events import KafkaSettings
from tests._kafka_fixtures import MakeTopic, produce
from tests.revocast.ops._instances import hand_instance as _hand_instance

NOW = time.time()
"""The reader's clock: heartbeats are read from ``NOW - window`` by record timestamp."""


def beat(instance: str, **fields: Any) -> dict[str, Any]:
    """A heartbeat as this SDK sends it (here: entered its status as it sent it)."""
    sent_at = fields.get("sent_at", NOW - 1)
    doc: dict[str, Any] = {
        "v": 1,
        "service": "svc",
        "instance": instance,
        "host": "web-1",
        "pid": 7,
        "status": "valid",
        "status_since": sent_at,
        "status_age": 0.0,
        "interval": 5.0,
        "sent_at": sent_at,
        "offsets": {"0": 0},
    }
    return {**doc, **fields}


def older_sdk_beat(instance: str, **fields: Any) -> dict[str, Any]:
    """A heartbeat of an SDK that did not say since when it is in its status."""
    doc = beat(instance, **fields)
    del doc["status_since"], doc["status_age"]
    return doc


@pytest.fixture
def topics(make_topic: MakeTopic) -> tuple[str, str]:
    return make_topic(partitions=2), make_topic(partitions=2)


def report(bootstrap: str, topics: tuple[str, str], *docs: Any, partition: int = 0) -> StatusReport:
    log, beats = topics
    produce(bootstrap, beats, *(json.dumps(doc).encode() for doc in docs), partition=partition)
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=log)
    return collect_status(kafka, max_token_lifetime=3600, heartbeat_topic=beats, clock=lambda: NOW)


@pytest.mark.kafka
def test_non_finite_numbers_in_a_heartbeat_are_unreadable_not_a_crash_or_a_live_instance(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    inf = float("inf")
    bad = [
        beat("b1", offsets={"0": inf}),
        beat("b2", pid=inf),
        beat("b3", entries={"jti": -inf}),
        beat("b4", failures=inf),
        beat("b5", sent_at=float("nan")),  # would never be stale
        beat("b6", sent_at=inf),
        beat("b7", interval=float("nan")),
        beat("b8", interval=inf),
    ]
    found = report(kafka_bootstrap, topics, beat("ok"), *bad)
    assert [i.instance for i in found.instances] == ["ok"]
    assert found.unreadable_heartbeats == len(bad)


@pytest.mark.kafka
def test_control_characters_in_a_heartbeat_cannot_forge_rows_or_drive_the_terminal(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    forged = "evil\n  orders  fake  web-9/1  VALID  0  0  1s ago"
    found = report(
        kafka_bootstrap,
        topics,
        beat(
            "i1",
            service=forged,
            host="\x1b[2J\x1b[Hweb-1",
            status="valid\r",
            error_kind="kafka_error\n  orders  fake  web-9/1  VALID  0  0  1s ago\x1b[2J",
        ),
        beat("i2", service="x" * 10_000),
    )
    out = found.render()
    sdk_lines = out[out.index("SDK instances") :].splitlines()
    assert len(sdk_lines) == 4  # the heading, the table header, one row per instance
    assert "\x1b" not in out
    assert "\r" not in out
    assert max(len(line) for line in sdk_lines) < 400


@pytest.mark.kafka
def test_the_later_heartbeat_of_an_instance_wins_even_when_its_clock_stepped_back(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    found = report(
        kafka_bootstrap,
        topics,
        beat("i1", sent_at=NOW - 30, status="valid"),
        beat("i1", sent_at=NOW - 40, status="interrupted"),  # NTP stepped the clock back
    )
    (instance,) = found.instances
    assert instance.status == "interrupted"


@pytest.mark.kafka
def test_a_record_dated_in_the_future_does_not_hide_the_instances_later_heartbeats(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    found = report(
        kafka_bootstrap,
        topics,
        beat("i1", sent_at=NOW + 86_400, status="valid"),  # a skewed or hostile writer
        beat("i1", sent_at=NOW - 60, status="valid"),  # the instance, dead for a minute
    )
    (instance,) = found.instances
    assert instance.stale


@pytest.mark.kafka
def test_the_lag_counts_log_partitions_the_instance_reports_no_offset_for(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    log, _ = topics
    produce(kafka_bootstrap, log, b"a", b"b", b"c", partition=1)
    found = report(kafka_bootstrap, topics, beat("i1", offsets={"0": 0}))
    (instance,) = found.instances
    assert instance.lag == 3


@pytest.mark.kafka
def test_on_a_busy_topic_the_lag_check_reads_the_lag_an_instance_reported_not_the_log_end_now(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    """30 records published since both heartbeats (a busy topic between two beats): the
    instance caught up at its beat is fine, the one 20 behind at its beat is not."""
    log, _ = topics
    produce(kafka_bootstrap, log, *(b"e%d" % n for n in range(30)))
    at_beat = {"0": 5, "1": 0}
    found = report(
        kafka_bootstrap,
        topics,
        beat("healthy", offsets=at_beat, end_offsets=at_beat),
        beat("lagging", offsets=at_beat, end_offsets={"0": 25, "1": 0}),
    )
    healthy, lagging = sorted(found.instances, key=lambda i: i.instance)
    assert (healthy.lag, healthy.reported_lag) == (25, 0)  # the table still shows 25
    assert (lagging.lag, lagging.reported_lag) == (25, 20)
    verdict = check_status(found, CheckThresholds(max_lag=10))
    assert verdict.severity is Severity.WARNING
    assert [f.message for f in verdict.findings] == [
        "svc instance lagging (web-1/7): 20 log records behind at its last heartbeat (limit 10)"
    ]


@pytest.mark.kafka
def test_a_window_reaching_before_1970_reads_every_heartbeat_not_a_traceback(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    log, beats = topics
    produce(kafka_bootstrap, beats, json.dumps(beat("i1")).encode())
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log)
    found = collect_status(
        kafka, max_token_lifetime=3600, heartbeat_topic=beats, window=1e10, clock=lambda: NOW
    )
    assert [i.instance for i in found.instances] == ["i1"]


@pytest.mark.kafka
def test_with_broker_timestamps_an_instance_hosts_clock_skew_neither_stales_nor_hides_it(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topics = (
        make_topic(partitions=1),
        make_topic(partitions=1, message_timestamp_type="LogAppendTime"),
    )
    found = report(
        kafka_bootstrap,
        topics,
        beat("behind", sent_at=NOW - 40),  # host clock 40 s slow: was STALE at once
        beat("far-behind", sent_at=NOW - 900),  # 15 min slow: was not listed at all
    )
    assert sorted((i.instance, i.stale) for i in found.instances) == [
        ("behind", False),
        ("far-behind", False),
    ]


@pytest.mark.kafka
def test_status_create_makes_the_heartbeat_topic_with_broker_timestamps(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import ConfigResource

    from revocast.ops import ensure_heartbeat_topic

    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=make_topic(partitions=1))
    beats = f"{kafka.topic}.heartbeats"
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert ensure_heartbeat_topic(kafka, beats)
        described = admin.describe_configs([ConfigResource("TOPIC", beats)])
        assert described["topic"][beats]["message.timestamp.type"]["value"] == "LogAppendTime"
    finally:
        admin.delete_topics([beats], timeout_ms=30_000)
        admin.close()


@pytest.mark.kafka
def test_a_deeply_nested_heartbeat_record_is_unreadable_not_a_crash(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    log, beats = topics
    produce(kafka_bootstrap, beats, b"[" * 100_000, json.dumps(beat("ok")).encode())
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log)
    found = collect_status(kafka, max_token_lifetime=3600, heartbeat_topic=beats, clock=lambda: NOW)
    assert [i.instance for i in found.instances] == ["ok"]
    assert found.unreadable_heartbeats == 1


@pytest.mark.kafka
def test_an_older_sdk_is_interrupted_since_its_first_interrupted_heartbeat_in_the_window(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    found = report(
        kafka_bootstrap,
        topics,
        older_sdk_beat("i1", sent_at=NOW - 90, status="valid"),
        older_sdk_beat("i1", sent_at=NOW - 60, status="interrupted"),
        older_sdk_beat("i2", sent_at=NOW - 50, status="interrupted"),
        older_sdk_beat("i1", sent_at=NOW - 30, status="interrupted"),
        older_sdk_beat("i2", sent_at=NOW - 20, status="valid"),
        older_sdk_beat("i2", sent_at=NOW - 10, status="interrupted"),
        older_sdk_beat("i1", sent_at=NOW - 1, status="interrupted"),
        older_sdk_beat("i2", sent_at=NOW - 1, status="interrupted"),
    )
    since = {i.instance: (i.status, NOW - i.status_since) for i in found.instances}
    assert since == {"i1": ("interrupted", 60), "i2": ("interrupted", 10)}
    assert not any(i.status_since_reported for i in found.instances)


@pytest.mark.kafka
def test_an_instance_is_in_its_status_for_as_long_as_its_heartbeat_says_not_since_its_first_beat(
    kafka_bootstrap: str, topics: tuple[str, str]
) -> None:
    """i1's only heartbeat in the window says it has been INTERRUPTED for 41 s (the window
    alone said 1 s); i2 flapped back to VALID and to INTERRUPTED between two heartbeats
    (the window alone said 60 s)."""
    found = report(
        kafka_bootstrap,
        topics,
        beat("i1", sent_at=NOW - 1, status="interrupted", status_age=41.0),
        beat("i2", sent_at=NOW - 60, status="interrupted", status_age=0.0),
        beat("i2", sent_at=NOW - 1, status="interrupted", status_age=3.0, status_since=NOW - 4),
    )
    lasted = {i.instance: (i.status_lasted(NOW), i.status_since_reported) for i in found.instances}
    assert lasted == {"i1": (42.0, True), "i2": (4.0, True)}
    assert found.instances[1].host_status_since == NOW - 4
    verdict = check_status(found, CheckThresholds(max_interrupted=30))
    assert [(f.severity, f.message) for f in verdict.findings] == [
        (Severity.CRITICAL, "svc instance i1 (web-1/7): INTERRUPTED for 42s (limit 30s)"),
        (Severity.WARNING, "svc instance i2 (web-1/7): INTERRUPTED for 4s (limit 30s)"),
    ]


@pytest.mark.kafka
def test_with_broker_timestamps_a_skewed_host_clock_does_not_change_how_long_a_status_lasted(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    """The host's clock is 15 min slow, so its wall-clock ``status_since`` is 15 min in
    the reader's past; the duration it reports, added to the broker's time, is not."""
    log, beats = (
        make_topic(partitions=1),
        make_topic(partitions=1, message_timestamp_type="LogAppendTime"),
    )
    host_now = time.time() - 900
    doc = beat(
        "i1", sent_at=host_now, status="interrupted", status_since=host_now - 41, status_age=41.0
    )
    produce(kafka_bootstrap, beats, json.dumps(doc).encode())
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log)
    found = collect_status(kafka, max_token_lifetime=3600, heartbeat_topic=beats)
    (instance,) = found.instances
    assert 41.0 <= instance.status_lasted(found.now) < 51.0
    assert instance.host_status_since == host_now - 41


@pytest.mark.kafka
@pytest.mark.parametrize("age", [-1.0, float("inf"), float("nan"), "long"])
def test_a_negative_or_non_finite_status_age_is_unreadable_not_a_made_up_length(
    kafka_bootstrap: str, topics: tuple[str, str], age: Any
) -> None:
    found = report(kafka_bootstrap, topics, beat("ok"), beat("bad", status_age=age))
    assert [i.instance for i in found.instances] == ["ok"]
    assert found.unreadable_heartbeats == 1


def hand_built(*instances: Instance) -> StatusReport:
    log = LogStatus(
        topic="revocations",
        earliest={0: 0},
        latest={0: 10},
        retention_ms=None,
        max_token_lifetime=3600.0,
        problems=(),
    )
    return StatusReport(
        now=NOW,
        log=log,
        state=StateStatus("revocations.state", exists=True, markers={0: 9}, log_ends={0: 10}),
        heartbeat_topic="revocations.heartbeats",
        heartbeat_topic_exists=True,
        window=600.0,
        instances=instances,
    )


def hand_instance(name: str, **fields: Any) -> Instance:
    return _hand_instance(name, now=NOW, **fields)


def test_the_table_says_how_long_each_instance_is_in_its_status_and_marks_approximations() -> None:
    out = hand_built(
        hand_instance("exact", status="interrupted", status_since=NOW - 42),
        hand_instance("older-sdk", status_since=NOW - 90, status_since_reported=False),
        # Silent for 2 minutes: VALID for as long as it was heard, nothing is known since.
        hand_instance("dead", stale=True, heard_at=NOW - 120, status_since=NOW - 300),
    ).render()
    rows = {line.split()[1]: line.split() for line in out.splitlines() if "web-1/7" in line}
    assert rows["exact"][3:5] == ["INTERRUPTED", "42s"]
    assert rows["older-sdk"][3:5] == ["VALID", ">=1.5m"]
    assert rows["dead"][3:5] == ["VALID", "3m"]
    assert "(FOR >=: at least that long; those heartbeats do not say since when" in out
    exact_only = hand_built(hand_instance("exact")).render()
    assert "FOR >=" not in exact_only


def test_the_table_and_json_say_the_kind_of_an_instances_last_error() -> None:
    built = hand_built(
        hand_instance(
            "i1", status="interrupted", status_since=NOW - 42, error_kind="kafka_unauthorized"
        ),
        hand_instance("i2"),
    )
    rows = {line.split()[1]: line.split() for line in built.render().splitlines() if "/7" in line}
    assert rows["i1"][3:6] == ["INTERRUPTED", "(kafka_unauthorized)", "42s"]
    assert rows["i2"][3:5] == ["VALID", "5m"]
    i1, i2 = json.loads(json.dumps(built.as_dict()))["heartbeats"]["instances"]
    assert (i1["error_kind"], i2["error_kind"]) == ("kafka_unauthorized", None)


def test_the_report_as_json_says_since_when_and_for_how_long_each_instance_is_in_its_status() -> (
    None
):
    built = hand_built(
        hand_instance("i1", status="interrupted", status_since=NOW - 42, host_status_since=5.0),
        hand_instance("i2", status_since=NOW - 90, status_since_reported=False),
    )
    i1, i2 = json.loads(json.dumps(built.as_dict()))["heartbeats"]["instances"]
    assert (i1["status_since"], i1["status_for"], i1["status_since_reported"]) == (
        NOW - 42,
        42.0,
        True,
    )
    assert i1["host_status_since"] == 5.0
    assert (i2["status_for"], i2["status_since_reported"], i2["host_status_since"]) == (
        90.0,
        False,
        None,
    )


def test_the_report_as_json_carries_the_instances_and_the_state_lag() -> None:
    instance = Instance(
        service="orders",
        instance="i1",
        host="web-1",
        pid=7,
        status="valid",
        lag=3,
        entries=0,
        sent_at=NOW - 1,
        interval=10.0,
        failures=0,
        stale=False,
        heard_at=NOW - 1,
        status_since=NOW - 300,
    )
    log = LogStatus(
        topic="revocations",
        earliest={0: 0},
        latest={0: 10},
        retention_ms=None,
        max_token_lifetime=3600.0,
        problems=(),
    )
    built = StatusReport(
        now=NOW,
        log=log,
        state=StateStatus("revocations.state", exists=True, markers={0: 9}, log_ends={0: 10}),
        heartbeat_topic="revocations.heartbeats",
        heartbeat_topic_exists=True,
        window=600.0,
        instances=(instance,),
    )
    data = json.loads(json.dumps(built.as_dict()))
    (beat,) = data["heartbeats"]["instances"]
    assert (beat["instance"], beat["status"], beat["lag"]) == ("i1", "valid", 3)
    assert data["state"]["partitions"] == [{"partition": 0, "marker": 9, "log_end": 10, "lag": 0}]
    assert data["log"]["unsafe"] is False
