"""``check_status``: the verdict ``revocast status --check`` exits with, decided on reports
built by hand (no broker), one rule per test."""

from __future__ import annotations

import dataclasses
import json
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
)
from revocation_events import SettingsError
from tests.revocast.ops._instances import hand_instance

NOW = 1_700_000_000.0


def instance(name: str = "i1", **fields: Any) -> Instance:
    return hand_instance(name, now=NOW, **fields)


def report(
    *instances: Instance,
    problems: tuple[str, ...] = (),
    state: StateStatus | None = None,
    heartbeat_topic_exists: bool = True,
) -> StatusReport:
    log = LogStatus(
        topic="revocations",
        earliest={0: 0},
        latest={0: 10},
        retention_ms=None,
        max_token_lifetime=3600.0,
        problems=problems,
    )
    return StatusReport(
        now=NOW,
        log=log,
        state=state
        or StateStatus("revocations.state", exists=True, markers={0: 9}, log_ends={0: 10}),
        heartbeat_topic="revocations.heartbeats",
        heartbeat_topic_exists=heartbeat_topic_exists,
        window=600.0,
        instances=instances or (instance(),),
    )


def severity(r: StatusReport, **limits: Any) -> Severity:
    return check_status(r, CheckThresholds(**limits)).severity


def test_a_valid_caught_up_instance_with_a_safe_log_is_ok_and_exits_0() -> None:
    verdict = check_status(report())
    assert verdict.findings == ()
    assert verdict.severity is Severity.OK
    assert verdict.exit_code == 0
    assert verdict.summary() == "OK"


# -- WARNING (1) ----------------------------------------------------------------------------


def test_an_instance_lagging_past_max_lag_at_its_heartbeat_is_a_warning_and_at_it_is_not() -> None:
    lagging = instance(lag=1_001, reported_lag=1_001)
    assert severity(report(lagging), max_lag=1_000) is Severity.WARNING
    assert severity(report(instance(lag=1_000, reported_lag=1_000)), max_lag=1_000) is Severity.OK
    verdict = check_status(report(instance(lag=9, reported_lag=5)), CheckThresholds(max_lag=2))
    assert verdict.exit_code == 1
    assert verdict.summary() == (
        "WARNING: orders instance i1 (web-1/7): 5 log records behind at its last heartbeat "
        "(limit 2)"
    )


def test_on_a_busy_topic_records_published_since_a_caught_up_heartbeat_are_not_a_warning() -> None:
    """At 1000 events/s and 10 s heartbeats, a healthy instance's last heartbeat is up to
    10 000 records behind the log end by the time ``status`` reads it."""
    busy = instance(lag=10_000, reported_lag=12)
    assert check_status(report(busy), CheckThresholds(max_lag=1_000)).findings == ()


def test_a_heartbeat_without_end_offsets_is_judged_against_the_log_end_now() -> None:
    older_sdk = instance(lag=5, reported_lag=None)
    verdict = check_status(report(older_sdk), CheckThresholds(max_lag=2))
    assert verdict.severity is Severity.WARNING
    assert verdict.summary().endswith("5 log records behind the log end now (limit 2)")


@pytest.mark.parametrize("status", ["initializing", "some-future-state"])
def test_an_instance_neither_valid_nor_off_is_a_warning(status: str) -> None:
    verdict = check_status(report(instance(status=status)))
    assert verdict.severity is Severity.WARNING
    assert f"{status.upper()}, not VALID" in verdict.summary()


def test_an_instance_interrupted_within_max_interrupted_is_a_warning() -> None:
    interrupted = instance(status="interrupted", status_since=NOW - 20)
    verdict = check_status(report(interrupted), CheckThresholds(max_interrupted=30))
    assert verdict.severity is Severity.WARNING
    assert "INTERRUPTED for 20s (limit 30s)" in verdict.summary()


def test_an_interruption_length_an_older_sdk_did_not_report_is_judged_as_a_lower_bound() -> None:
    """Heartbeats without ``status_age``: the length counts from the first INTERRUPTED
    heartbeat heard, which may be short of the truth; the finding says so."""
    older_sdk = instance(status="interrupted", status_since=NOW - 20, status_since_reported=False)
    verdict = check_status(report(older_sdk), CheckThresholds(max_interrupted=30))
    assert verdict.severity is Severity.WARNING
    assert verdict.summary() == (
        "WARNING: orders instance i1 (web-1/7): INTERRUPTED for at least 20s "
        "(limit 30s; its heartbeats do not say since when)"
    )
    past = dataclasses.replace(older_sdk, status_since=NOW - 31)
    assert severity(report(past), max_interrupted=30) is Severity.CRITICAL


def test_an_instance_not_valid_says_for_how_long() -> None:
    verdict = check_status(report(instance(status="initializing", status_since=NOW - 90)))
    assert verdict.summary() == (
        "WARNING: orders instance i1 (web-1/7): INITIALIZING, not VALID (for 1.5m)"
    )


def test_a_state_topic_behind_past_max_state_lag_is_a_warning() -> None:
    behind = StateStatus("revocations.state", exists=True, markers={0: 2}, log_ends={0: 10})
    assert severity(report(state=behind), max_state_lag=7) is Severity.OK  # 10 - (2 + 1)
    verdict = check_status(report(state=behind), CheckThresholds(max_state_lag=6))
    assert verdict.severity is Severity.WARNING
    assert "state topic revocations.state is 7 log records behind (limit 6)" in verdict.summary()


def test_a_state_partition_without_a_marker_while_the_log_has_records_is_a_warning() -> None:
    unmarked = StateStatus("revocations.state", exists=True, markers={0: None}, log_ends={0: 10})
    verdict = check_status(report(state=unmarked))
    assert verdict.severity is Severity.WARNING
    assert "no offset marker for log partitions 0" in verdict.summary()


def test_an_absent_state_topic_is_fine_because_sdks_replay_the_log() -> None:
    absent = StateStatus("revocations.state", exists=False, markers={}, log_ends={0: 10})
    assert severity(report(state=absent)) is Severity.OK


# -- CRITICAL (2) ---------------------------------------------------------------------------


def test_an_unsafe_log_topic_is_critical() -> None:
    problem = "retention 1h is shorter than twice the max token lifetime (2h): ..."
    verdict = check_status(report(problems=(problem,)))
    assert verdict.severity is Severity.CRITICAL
    assert verdict.exit_code == 2
    assert verdict.summary() == f"CRITICAL: log topic revocations: {problem}"


def test_an_instance_interrupted_past_max_interrupted_is_critical() -> None:
    interrupted = instance(status="interrupted", status_since=NOW - 31)
    verdict = check_status(report(interrupted), CheckThresholds(max_interrupted=30))
    assert verdict.severity is Severity.CRITICAL
    assert "INTERRUPTED for 31s (limit 30s)" in verdict.summary()


def test_the_finding_names_the_kind_of_the_instances_last_error() -> None:
    refused = instance(status="interrupted", status_since=NOW - 31, error_kind="kafka_error")
    verdict = check_status(report(refused), CheckThresholds(max_interrupted=30))
    assert "INTERRUPTED for 31s, kafka_error (limit 30s)" in verdict.summary()


def test_a_stale_instance_is_critical_whatever_it_last_said() -> None:
    silent = instance(stale=True, heard_at=NOW - 120, lag=10**9)
    live = instance("i2")
    verdict = check_status(report(silent, live))
    assert verdict.severity is Severity.CRITICAL
    # Its lag is as old as its last heartbeat: not reported as a lag of its own.
    assert [f.message for f in verdict.findings] == [
        "orders instance i1 (web-1/7): no heartbeat for 2m (was VALID)"
    ]


def test_an_absent_heartbeat_topic_is_critical_unless_no_instance_is_expected() -> None:
    blind = report(heartbeat_topic_exists=False)
    verdict = check_status(blind)
    assert verdict.severity is Severity.CRITICAL
    assert "heartbeat topic revocations.heartbeats absent" in verdict.summary()
    assert severity(blind, min_instances=0) is Severity.OK


def test_fewer_live_instances_than_min_instances_is_critical() -> None:
    closed = instance("i1", status="off")  # said goodbye: neither live nor a problem
    assert check_status(report(closed), CheckThresholds(min_instances=0)).findings == ()
    verdict = check_status(report(closed, instance("i2")), CheckThresholds(min_instances=2))
    assert verdict.severity is Severity.CRITICAL
    assert verdict.summary() == (
        "CRITICAL: 1 live SDK instances heard in the last 10m (expected at least 2)"
    )


# -- the verdict as a whole -----------------------------------------------------------------


def test_the_worst_finding_decides_and_the_summary_puts_it_first_on_one_line() -> None:
    r = report(
        instance("i1", reported_lag=5),
        instance("i2", status="initializing"),
        instance("i3", stale=True),
        instance("i4", status="initializing"),
        instance("i5", status="initializing"),
    )
    verdict = check_status(r, CheckThresholds(max_lag=1))
    assert verdict.severity is Severity.CRITICAL
    summary = verdict.summary()
    assert "\n" not in summary
    assert summary.startswith("CRITICAL: orders instance i3 (web-1/7): no heartbeat")
    assert summary.endswith("(and 2 more)")


def test_the_verdict_as_json_lists_every_finding_worst_first() -> None:
    verdict = check_status(report(instance("i1", reported_lag=5), instance("i2", stale=True)))
    data = json.loads(json.dumps(verdict.as_dict()))
    assert data["status"] == "CRITICAL"
    assert data["exit_code"] == 2
    assert [f["severity"] for f in data["findings"]] == ["CRITICAL"]
    with_lag = check_status(
        report(instance("i1", reported_lag=5), instance("i2", stale=True)),
        CheckThresholds(max_lag=1),
    )
    assert [f["severity"] for f in with_lag.as_dict()["findings"]] == ["CRITICAL", "WARNING"]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_lag": -1},
        {"max_state_lag": 1.5},
        {"min_instances": True},
        {"max_interrupted": float("nan")},
        {"max_interrupted": float("inf")},
        {"max_interrupted": -1.0},
    ],
)
def test_check_thresholds_refuse_negative_fractional_or_non_finite_limits(
    bad: dict[str, Any],
) -> None:
    with pytest.raises(SettingsError, match=next(iter(bad))):
        CheckThresholds(**bad)


def test_check_thresholds_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CheckThresholds().max_lag = 5  # type: ignore[misc]
