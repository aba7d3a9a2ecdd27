"""``revocast status`` end to end: SDK instances in their own processes, a killed one goes
STALE, unsafe retention fails the command, broker and topic errors are one line."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaAdminClient
from kafka.errors import UnknownTopicOrPartitionError

from consumer_sdk import Revocast
from revocast.cli import main
from revocation_events import EventCodec, KafkaSettings, TokenRevoked
from tests._kafka_fixtures import MakeTopic, produce, wait_until
from tests.consumer_sdk._helpers import settings
from tests.revocast.cli._status_support import sdk_service, status_env

SERVICES = ("billing", "inventory", "orders")


@pytest.fixture
def env(kafka_bootstrap: str, make_topic: MakeTopic, monkeypatch: pytest.MonkeyPatch) -> str:
    return status_env(kafka_bootstrap, make_topic, monkeypatch, partitions=2)


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["status", *args])
    return code, capsys.readouterr().out


def row(out: str, service: str) -> str:
    return next((line for line in out.splitlines() if line.strip().startswith(service)), "")


@pytest.mark.kafka
def test_status_lists_three_running_sdk_processes_and_flags_the_killed_one_stale(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    # One pipe each: a process killed while waiting on a shared Event would wedge its set().
    pipes = {name: ctx.Pipe() for name in SERVICES}
    procs = {
        name: ctx.Process(
            target=sdk_service, args=(kafka_bootstrap, env, beats, name, pipes[name][0])
        )
        for name in SERVICES
    }
    for proc in procs.values():
        proc.start()
    try:
        out = ""

        def all_valid() -> bool:
            nonlocal out
            out = status(capsys, "--stale", "2s")[1]
            return all(" VALID " in row(out, name) for name in SERVICES)

        wait_until(all_valid, timeout=40, message="three VALID instances in status")
        assert "3 instances, 0 stale" in out
        for name in SERVICES:
            line = row(out, name)
            assert f"/{procs[name].pid}" in line
            assert re.search(r"VALID\s+[\d.]+[smh]\s+0\s+0\s", line), line  # no lag, no entries

        procs["inventory"].kill()
        procs["inventory"].join(10)

        def inventory_stale() -> bool:
            nonlocal out
            code, out = status(capsys, "--stale", "2s")
            assert code == 0  # stale instances are flagged, not failures
            return row(out, "inventory").endswith("STALE")

        wait_until(inventory_stale, timeout=20, message="the killed instance flagged STALE")
        assert "3 instances, 1 stale" in out
        assert not row(out, "orders").endswith("STALE")
        assert not row(out, "billing").endswith("STALE")
    finally:
        for name, proc in procs.items():
            if proc.is_alive():
                pipes[name][1].send(None)
        for proc in procs.values():
            proc.join(15)
            if proc.is_alive():
                proc.kill()
                proc.join(5)


@pytest.mark.kafka
def test_status_reports_since_when_a_running_sdk_is_valid_from_its_heartbeats(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Read with a 1 s window: from the heartbeats alone, the instance would be VALID for
    at most 1 s; its heartbeats say since when, so status reports the whole time."""
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=env)
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    rc = Revocast(
        settings(kafka=kafka, service_name="steady", heartbeat_interval=0.2, heartbeat_topic=beats)
    )
    try:
        assert rc.wait_until_ready(30)
        since = rc.status.since
        found: dict[str, Any] = {}

        def valid_past_the_window() -> bool:
            code = main(["status", "--json", "--window", "1s"])
            data = json.loads(capsys.readouterr().out)
            assert code == 0
            found.update(next(iter(data["heartbeats"]["instances"]), {}))
            return found.get("status") == "valid" and found.get("status_for", 0) > 1.5

        wait_until(valid_past_the_window, timeout=20, message="VALID for longer than the window")
        assert found["status_since_reported"] is True
        assert found["host_status_since"] == since
        # Same host, same clock: the reader's time line agrees with the SDK's within a beat.
        assert abs(found["status_since"] - since) < 0.5
        line = row(status(capsys, "--window", "1s")[1], "steady")
        assert re.search(r"VALID\s+[\d.]+s\s", line), line  # no ">=": not approximated
    finally:
        rc.close()


@pytest.mark.kafka
def test_a_closed_instance_reports_off_rather_than_going_stale(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=env)
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    rc = Revocast(
        settings(kafka=kafka, service_name="closing", heartbeat_interval=0.2, heartbeat_topic=beats)
    )
    assert rc.wait_until_ready(30)
    rc.close()
    code, out = status(capsys, "--stale", "0.1s")
    assert code == 0
    assert " OFF " in row(out, "closing")
    assert not row(out, "closing").endswith("STALE")


@pytest.mark.kafka
def test_retention_shorter_than_twice_the_token_lifetime_is_unsafe_and_exits_1(
    make_topic: MakeTopic,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REVOCAST_TOPIC", make_topic(partitions=1, retention_ms=3_600_000))
    code, out = status(capsys)
    assert code == 1
    assert "retention 1h" in out
    assert "UNSAFE: retention 1h is shorter than twice the max token lifetime (2h)" in out


@pytest.mark.kafka
def test_rebuild_state_then_status_shows_the_state_topic_lag_behind_the_log(
    kafka_bootstrap: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    codec = EventCodec()

    def revoke(*jtis: str) -> None:
        expires = datetime.now(UTC) + timedelta(minutes=5)
        values = [
            codec.encode(TokenRevoked(issuer="t", jti=j, expires_at=expires)).value for j in jtis
        ]
        produce(kafka_bootstrap, env, *values, partition=0)

    revoke("a", "b")
    assert f"state topic {env}.state: absent" in status(capsys)[1]
    try:
        assert main(["rebuild-state", "--no-progress"]) == 0
        summary = capsys.readouterr().out
        assert f"state topic {env}.state (created): 2 rules" in summary
        assert "markers: 0@1" in summary
        revoke("c", "d", "e")
        code, out = status(capsys)
        assert code == 0
        assert f"state topic {env}.state: 3 log records behind" in out
        assert re.search(r"^\s+0\s+1\s+5\s+3$", out, re.MULTILINE), out
    finally:
        _delete(kafka_bootstrap, f"{env}.state")


@pytest.mark.kafka
def test_rebuild_state_and_status_use_the_state_topic_the_worker_and_sdks_are_told(
    kafka_bootstrap: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """With REVOCAST_STATE_TOPIC set, both used to work on ``<log>.state``: the rebuild wrote
    a topic no SDK read, and status reported on it."""
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    told = f"{env}-acme-state"
    monkeypatch.setenv("REVOCAST_STATE_TOPIC", told)
    expires = datetime.now(UTC) + timedelta(minutes=5)
    values = [
        EventCodec().encode(TokenRevoked(issuer="t", jti=j, expires_at=expires)).value
        for j in ("a", "b")
    ]
    produce(kafka_bootstrap, env, *values, partition=0)
    try:
        assert f"state topic {told}: absent" in status(capsys)[1]
        assert main(["rebuild-state", "--no-progress"]) == 0
        assert f"state topic {told} (created): 2 rules" in capsys.readouterr().out
        code, out = status(capsys)
        assert code == 0
        assert f"state topic {told}: 0 log records behind" in out
        assert re.search(r"^\s+0\s+1\s+2\s+0$", out, re.MULTILINE), out
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            assert f"{env}.state" not in admin.list_topics()
        finally:
            admin.close()
    finally:
        _delete(kafka_bootstrap, told)
        _delete(kafka_bootstrap, f"{env}.state")


@pytest.mark.parametrize("command", [["status"], ["status", "--check"], ["rebuild-state"]])
@pytest.mark.parametrize(
    "overrides",
    [
        {"REVOCAST_STATE_TOPIC": "rev"},
        {"REVOCAST_STATE_TOPIC": "both", "REVOCAST_SNAPSHOT_TOPIC": "both"},
    ],
    ids=["log-topic", "same-as-snapshots"],
)
def test_a_state_topic_the_worker_would_refuse_is_a_one_line_settings_error(
    command: list[str],
    overrides: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # refused before connecting
    monkeypatch.setenv("REVOCAST_TOPIC", "rev")
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    for name, value in overrides.items():
        monkeypatch.setenv(name, value)
    assert main(command) == (3 if "--check" in command else 2)
    err = capsys.readouterr().err.strip()
    assert err.startswith("revocast: error: "), err
    assert "\n" not in err, err
    assert "needs a topic of its own" in err


@pytest.mark.kafka
def test_status_create_makes_the_heartbeat_topic_once(
    kafka_bootstrap: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    beats = f"{env}.heartbeats"
    monkeypatch.delenv("REVOCAST_HEARTBEAT_TOPIC")
    try:
        _, out = status(capsys)
        assert "heartbeat topic absent (create it: revocast status --create)" in out
        code, out = status(capsys, "--create")
        assert code == 0
        assert f"created heartbeat topic {beats}" in out
        assert "0 instances, 0 stale" in out
        assert "created" not in status(capsys, "--create")[1]
    finally:
        _delete(kafka_bootstrap, beats)


def _delete(bootstrap: str, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics([topic], timeout_ms=30_000)
    finally:
        admin.close()


@pytest.mark.kafka
def test_status_says_so_in_one_line_when_the_log_topic_is_missing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", "no-such-topic-for-revocast-status")
    assert main(["status"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "revocast: error: topic 'no-such-topic-for-revocast-status' does not exist"


def test_status_says_so_in_one_line_when_the_broker_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["status"]) == 1
    assert capsys.readouterr().err.strip() == "revocast: error: cannot reach Kafka at 127.0.0.1:1"


def test_rebuild_state_says_so_in_one_line_when_the_broker_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    assert main(["rebuild-state", "--no-progress"]) == 1
    assert capsys.readouterr().err.strip() == "revocast: error: cannot reach Kafka at 127.0.0.1:1"


@pytest.mark.kafka
def test_a_malformed_or_foreign_marker_is_passed_over_as_the_sdk_does_not_a_traceback(
    kafka_bootstrap: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    expires = datetime.now(UTC) + timedelta(minutes=5)
    value = EventCodec().encode(TokenRevoked(issuer="t", jti="a", expires_at=expires)).value
    produce(kafka_bootstrap, env, value, value, partition=0)
    try:
        assert main(["rebuild-state", "--no-progress"]) == 0
        assert "markers: 0@1" in capsys.readouterr().out
        foreign = b'{"topic":"another-log","partition":0,"offset":99}'
        for bad in (b"garbage", b'{"partition": "zero"}', foreign):
            produce(kafka_bootstrap, f"{env}.state", bad, key=b"__offsets__:0", partition=0)
        code, out = status(capsys)
        assert code == 0, out
        assert re.search(r"^\s+0\s+1\s+2\s+0$", out, re.MULTILINE), out
    finally:
        _delete(kafka_bootstrap, f"{env}.state")


@pytest.mark.kafka
def test_malformed_heartbeats_are_counted_and_skipped_not_a_traceback(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import json
    import time

    now = time.time()
    good = {"instance": "ok", "service": "svc", "sent_at": now, "interval": 5, "pid": 7}
    bad = [
        {**good, "instance": "b1", "offsets": {"not-a-partition": 1}},
        {**good, "instance": "b2", "interval": "fast"},
        {**good, "instance": "b3", "entries": ["jti"]},
        {**good, "instance": "b4", "pid": "seven"},
        ["not", "an", "object"],
    ]
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    produce(kafka_bootstrap, beats, *(json.dumps(doc).encode() for doc in [good, *bad]))
    code, out = status(capsys)
    assert code == 0
    assert "1 instances, 0 stale" in out
    assert "(5 unreadable heartbeat records skipped)" in out
