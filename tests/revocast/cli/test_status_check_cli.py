"""``revocast status --check`` and ``--json`` end to end: the exit code a monitor reads
(0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and the one line on stderr saying why."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaAdminClient

from consumer_sdk import Revocast
from revocast.cli import main
from revocation_events import EventCodec, KafkaSettings, TokenRevoked
from tests._kafka_fixtures import MakeTopic, produce, wait_until
from tests.consumer_sdk._helpers import settings
from tests.revocast.cli._status_support import sdk_service, status_env


@pytest.fixture
def env(kafka_bootstrap: str, make_topic: MakeTopic, monkeypatch: pytest.MonkeyPatch) -> str:
    return status_env(kafka_bootstrap, make_topic, monkeypatch, partitions=1)


def status(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["status", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def send_beats(bootstrap: str, *docs: dict[str, Any]) -> None:
    """Heartbeats as an SDK instance writes them, dated by the sender (no broker time)."""
    base = {"v": 1, "service": "orders", "host": "web-1", "pid": 7, "interval": 5.0}
    values = [json.dumps({**base, **doc}).encode() for doc in docs]
    produce(bootstrap, os.environ["REVOCAST_HEARTBEAT_TOPIC"], *values)


@pytest.mark.kafka
def test_check_exits_0_while_an_sdk_runs_and_2_with_the_reason_once_it_is_killed(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ctx = multiprocessing.get_context("spawn")
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    stop_reader, stop_writer = ctx.Pipe()
    proc = ctx.Process(
        target=sdk_service, args=(kafka_bootstrap, env, beats, "orders", stop_reader)
    )
    proc.start()
    try:
        seen: list[tuple[int, str, str]] = []

        def healthy() -> bool:
            seen.append(status(capsys, "--check", "--stale", "2s"))
            return seen[-1][0] == 0

        wait_until(healthy, timeout=40, message="status --check exits 0 for a running SDK")
        code, out, err = seen[-1]
        assert err == ""
        assert "check: OK" in out

        proc.kill()
        proc.join(10)

        def critical() -> bool:
            seen.append(status(capsys, "--check", "--stale", "2s"))
            return seen[-1][0] != 0

        wait_until(critical, timeout=20, message="status --check fails for a killed SDK")
        code, out, err = seen[-1]
        assert code == 2, (out, err)
        (line,) = err.splitlines()
        assert line.startswith("revocast status: CRITICAL: orders instance ")
        assert f"/{proc.pid}): no heartbeat for " in line
    finally:
        if proc.is_alive():
            stop_writer.send(None)
        proc.join(15)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


@pytest.mark.kafka
def test_check_exits_2_for_an_instance_interrupted_past_the_bound_and_1_within_it(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    send_beats(
        kafka_bootstrap,
        {"instance": "i1", "status": "valid", "sent_at": now - 90, "offsets": {"0": 0}},
        {"instance": "i1", "status": "interrupted", "sent_at": now - 60, "offsets": {"0": 0}},
        {"instance": "i1", "status": "interrupted", "sent_at": now - 1, "offsets": {"0": 0}},
    )
    code, out, err = status(capsys, "--check")
    assert code == 2
    # These heartbeats (an older SDK's) do not say since when: a lower bound, and it says so.
    assert re.search(
        r"CRITICAL: orders instance i1 \(web-1/7\): INTERRUPTED for at least 1(\.\d+)?m "
        r"\(limit 30s; its heartbeats do not say since when\)",
        err,
    ), err
    assert "check: CRITICAL" in out
    code, _, err = status(capsys, "--check", "--max-interrupted", "2m")
    assert code == 1
    assert err.startswith("revocast status: WARNING: orders instance i1 (web-1/7): INTERRUPTED")
    code, _, err = status(capsys)
    assert (code, err) == (0, "")  # without --check the exit code is what it always was


@pytest.mark.kafka
def test_check_judges_a_stalled_sdk_interrupted_since_its_sync_thread_stopped(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A revocation listener blocks the SDK's sync thread; the SDK reports INTERRUPTED
    dated from when it stopped (2 s before it can tell). Its first INTERRUPTED heartbeat
    already says so: status --check goes by that, not by when the heartbeat was heard."""
    kafka = KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=env)
    beats = os.environ["REVOCAST_HEARTBEAT_TOPIC"]
    rc = Revocast(
        settings(
            kafka=kafka,
            service_name="stuck",
            heartbeat_interval=0.2,
            heartbeat_topic=beats,
            max_staleness=4.0,  # a stall is reported after 2 s
            poll_timeout_ms=100,
            allow_unsigned_events=True,
        )
    )
    release = threading.Event()
    blocked_at: list[float] = []

    def stuck_listener(event: object) -> None:
        blocked_at.append(time.time())
        release.wait(60)

    rc.add_revocation_listener(stuck_listener)
    try:
        assert rc.wait_until_ready(30)
        expires = datetime.now(UTC) + timedelta(minutes=5)
        produce(
            kafka_bootstrap,
            env,
            EventCodec().encode(TokenRevoked(issuer="t", jti="a", expires_at=expires)).value,
        )
        seen: list[tuple[int, str, str]] = []

        def interrupted() -> bool:
            seen.append(status(capsys, "--check", "--json", "--max-interrupted", "1s"))
            return '"status": "interrupted"' in seen[-1][1]

        wait_until(interrupted, timeout=30, message="the stalled SDK reported INTERRUPTED")
        code, out, err = seen[-1]
        assert code == 2, err
        assert re.search(
            r"CRITICAL: stuck instance \S+ \(\S+\): "
            r"INTERRUPTED for [\d.]+s, sync_stalled \(limit 1s\)$",
            err.strip(),
        ), err
        (instance,) = json.loads(out)["heartbeats"]["instances"]
        assert instance["status_since_reported"] is True
        assert instance["error_kind"] == "sync_stalled"  # the kind, never the text
        assert abs(instance["status_since"] - blocked_at[0]) < 1.0
    finally:
        release.set()
        rc.close()


@pytest.mark.kafka
def test_check_exits_1_for_an_instance_lagging_past_max_lag(
    kafka_bootstrap: str, env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    produce(kafka_bootstrap, env, b"a", b"b", b"c", b"published-since-the-beat")
    beat = {"status": "valid", "sent_at": time.time(), "offsets": {"0": 0}}
    send_beats(kafka_bootstrap, {**beat, "instance": "i1", "end_offsets": {"0": 3}})
    code, _, err = status(capsys, "--check", "--max-lag", "2")
    assert code == 1
    assert err == (
        "revocast status: WARNING: orders instance i1 (web-1/7): 3 log records behind at its "
        "last heartbeat (limit 2)\n"
    )
    assert status(capsys, "--check", "--max-lag", "3")[0] == 0


@pytest.mark.kafka
def test_check_exits_2_for_retention_shorter_than_twice_the_token_lifetime(
    make_topic: MakeTopic,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REVOCAST_TOPIC", make_topic(partitions=1, retention_ms=3_600_000))
    code, _, err = status(capsys, "--check", "--min-instances", "0")
    assert code == 2
    assert err.startswith("revocast status: CRITICAL: log topic test-")
    assert "retention 1h is shorter than twice the max token lifetime (2h)" in err


@pytest.mark.kafka
def test_check_exits_2_when_no_sdk_instance_was_heard_in_the_window(
    env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = status(capsys, "--check")
    assert code == 2
    assert err == (
        "revocast status: CRITICAL: 0 live SDK instances heard in the last 10m "
        "(expected at least 1)\n"
    )
    assert status(capsys, "--check", "--min-instances", "0")[0] == 0


@pytest.mark.kafka
def test_json_carries_the_report_and_the_verdict_and_create_keeps_stdout_json(
    kafka_bootstrap: str,
    env: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("REVOCAST_HEARTBEAT_TOPIC")
    try:
        code, out, err = status(capsys, "--json", "--check", "--create")
        data = json.loads(out)
        assert code == 2
        assert err.splitlines() == [
            f"created heartbeat topic {env}.heartbeats",
            "revocast status: CRITICAL: 0 live SDK instances heard in the last 10m "
            "(expected at least 1)",
        ]
        assert data["check"]["status"] == "CRITICAL"
        assert data["check"]["exit_code"] == 2
        assert data["heartbeats"] == {
            "topic": f"{env}.heartbeats",
            "exists": True,
            "window": 600.0,
            "unreadable": 0,
            "instances": [],
        }
        assert data["log"]["topic"] == env
        assert data["state"]["exists"] is False
    finally:
        admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        try:
            admin.delete_topics([f"{env}.heartbeats"], timeout_ms=30_000)
        finally:
            admin.close()


@pytest.mark.kafka
def test_check_exits_3_unknown_when_the_log_topic_is_missing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", "no-such-topic-for-revocast-status")
    code, out, err = status(capsys, "--check")
    assert (code, out) == (3, "")
    assert (
        err.strip() == "revocast: error: topic 'no-such-topic-for-revocast-status' does not exist"
    )


def test_check_exits_3_unknown_when_the_broker_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    code, out, err = status(capsys, "--check")
    assert (code, out) == (3, "")
    assert err.strip() == "revocast: error: cannot reach Kafka at 127.0.0.1:1"


@pytest.mark.parametrize(
    "option",
    [
        ("--max-lag", "-1"),
        ("--max-lag", "²"),
        ("--min-instances", "two"),
        ("--max-interrupted", "soon"),
    ],
)
def test_a_bad_threshold_exits_3_unknown_with_check_and_2_without(
    option: tuple[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    code, _, err = status(capsys, "--check", *option)
    assert code == 3
    assert err.startswith(f"revocast: error: {option[0]}: ")
    assert status(capsys, *option)[0] == 2


@pytest.mark.parametrize(
    "args",
    [
        ("--check", "--bogus"),  # unrecognised: the top-level parser's error
        ("--check", "--max-lag"),  # no value: the status parser's error
        ("--max-lag", "--check"),
        ("--che", "--bogus"),  # an abbreviation argparse takes for --check
        ("--check=yes",),
    ],
)
def test_a_usage_error_under_check_exits_3_unknown_not_2_which_a_monitor_reads_as_critical(
    args: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["status", *args])
    assert exited.value.code == 3
    err = capsys.readouterr().err
    assert err.startswith("usage: revocast")
    assert "error: " in err


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "--bogus"],
        ["status", "--c"],  # ambiguous: --check or --create
        ["replay", "--check"],
        ["no-such-command", "--check"],
    ],
)
def test_other_usage_errors_still_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "error: " in capsys.readouterr().err
