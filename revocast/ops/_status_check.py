"""``revocast status --check``: a :class:`~revocast.ops.StatusReport` judged for monitoring.

:func:`check_status` lists what is wrong as :class:`Finding` s; the worst one's
:class:`Severity` is the verdict, valued as the Nagios plugin exit codes.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from revocast.ops._status import StateStatus, StatusReport, human_duration
from revocation_events import SettingsError

__all__ = ["CheckThresholds", "Finding", "Severity", "StatusCheck", "check_status"]


class Severity(enum.IntEnum):
    """How bad a finding is; the value is the exit code of ``revocast status --check``, as
    for a Nagios plugin."""

    OK = 0
    WARNING = 1
    """Degraded: an SDK instance not VALID (or INTERRUPTED within ``max_interrupted``), one
    or the state topic lagging past its limit."""
    CRITICAL = 2
    """Revocations can be missed: an unsafe log topic, an instance INTERRUPTED past
    ``max_interrupted`` or silent (stale), fewer live instances than ``min_instances``."""
    UNKNOWN = 3
    """No verdict: Kafka unreachable, the log topic missing, bad settings. Never returned by
    :func:`check_status`; the command exits with it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckThresholds:
    """Limits of :func:`check_status`; a value equal to its limit is still fine."""

    max_lag: int = 1_000
    """Log records an SDK instance may be behind, as it reported at its last heartbeat
    (:attr:`Instance.reported_lag`): records published since do not count, so a busy topic
    does not make a healthy instance look behind. An instance whose sync thread is stuck
    keeps reporting the lag it had, but the SDK's stall watch reports it INTERRUPTED. A
    heartbeat without ``end_offsets`` is measured against the log's end now instead."""
    max_state_lag: int = 10_000
    """Log records the state topic's markers may be behind, summed over partitions."""
    max_interrupted: float = 30.0
    """Seconds an instance may report INTERRUPTED before it is critical: the SDK's default
    ``max_staleness``, after which its failure policy decides every token. Measured as the
    SDK measures it: the ``status_age`` of its last heartbeat plus the time since that
    heartbeat (:attr:`Instance.status_since`); for heartbeats without it (older SDKs), from
    the first INTERRUPTED heartbeat heard in the window, which may be up to one interval
    short."""
    min_instances: int = 1
    """Live (heard, not stale, not OFF) instances expected in the window; 0: none needed."""

    def __post_init__(self) -> None:
        for name in ("max_lag", "max_state_lag", "min_instances"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise SettingsError(f"{name} must be a whole number >= 0, got {value!r}")
        if not (math.isfinite(self.max_interrupted) and self.max_interrupted >= 0):
            raise SettingsError(
                f"max_interrupted must be finite seconds >= 0, got {self.max_interrupted!r}"
            )


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason the check is not OK."""

    severity: Severity
    message: str


@dataclass(frozen=True, slots=True)
class StatusCheck:
    """The verdict on a :class:`StatusReport`: the worst severity among its findings."""

    findings: tuple[Finding, ...]

    @property
    def severity(self) -> Severity:
        return max((f.severity for f in self.findings), default=Severity.OK)

    @property
    def exit_code(self) -> int:
        return int(self.severity)

    def _worst_first(self) -> list[Finding]:
        return sorted(self.findings, key=lambda f: -f.severity)

    def summary(self, *, limit: int = 3) -> str:
        """One line: the verdict and the ``limit`` worst findings."""
        ordered = self._worst_first()
        if not ordered:
            return "OK"
        text = "; ".join(f.message for f in ordered[:limit])
        more = f" (and {len(ordered) - limit} more)" if len(ordered) > limit else ""
        return f"{self.severity.name}: {text}{more}"

    def render(self) -> str:
        lines = [f"check: {self.severity.name}"]
        lines += [f"  {f.severity.name}: {f.message}" for f in self._worst_first()]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.severity.name,
            "exit_code": self.exit_code,
            "findings": [
                {"severity": f.severity.name, "message": f.message} for f in self._worst_first()
            ],
        }


def check_status(report: StatusReport, thresholds: CheckThresholds | None = None) -> StatusCheck:
    """Whether ``report`` is healthy, by the rules :class:`Severity` lists."""
    limits = thresholds or CheckThresholds()
    findings = [
        Finding(Severity.CRITICAL, f"log topic {report.log.topic}: {problem}")
        for problem in report.log.problems
    ]
    findings += _state_findings(report.state, limits)
    findings += _sdk_findings(report, limits)
    return StatusCheck(tuple(findings))


def _state_findings(state: StateStatus, limits: CheckThresholds) -> list[Finding]:
    # An absent state topic is a supported set-up: SDKs bootstrap by replaying the log.
    if not state.exists:
        return []
    findings = []
    unmarked = [str(p) for p in sorted(state.log_ends) if state.lag(p) is None]
    if unmarked:
        findings.append(
            Finding(
                Severity.WARNING,
                f"state topic {state.topic}: no offset marker for log partitions "
                f"{', '.join(unmarked)}",
            )
        )
    behind = sum(state.lag(p) or 0 for p in state.log_ends)
    if behind > limits.max_state_lag:
        findings.append(
            Finding(
                Severity.WARNING,
                f"state topic {state.topic} is {behind} log records behind "
                f"(limit {limits.max_state_lag})",
            )
        )
    return findings


def _sdk_findings(report: StatusReport, limits: CheckThresholds) -> list[Finding]:
    if not report.heartbeat_topic_exists:
        if not limits.min_instances:
            return []
        return [
            Finding(
                Severity.CRITICAL,
                f"heartbeat topic {report.heartbeat_topic} absent: no SDK instance can be seen",
            )
        ]
    findings = []
    live = 0
    for i in report.instances:
        who = f"{i.service} instance {i.instance} ({i.host}/{i.pid})"
        status = i.status.upper()
        if i.status == "off":
            continue
        if i.stale:
            # Silent: dead, or cut off from Kafka and serving an ageing state; no telling.
            silent = human_duration(max(0.0, report.now - i.heard_at))
            findings.append(
                Finding(Severity.CRITICAL, f"{who}: no heartbeat for {silent} (was {status})")
            )
            continue
        live += 1
        lasted = i.status_lasted(report.now)
        # Without the instance's own status_age, ``lasted`` is a lower bound: say so.
        for_ = f"for {'' if i.status_since_reported else 'at least '}{human_duration(lasted)}"
        if i.error_kind is not None and i.status != "valid":
            for_ += f", {i.error_kind}"
        if i.status == "interrupted":
            past = lasted > limits.max_interrupted
            limit = f"limit {human_duration(limits.max_interrupted)}"
            if not i.status_since_reported:
                limit += "; its heartbeats do not say since when"
            findings.append(
                Finding(
                    Severity.CRITICAL if past else Severity.WARNING,
                    f"{who}: INTERRUPTED {for_} ({limit})",
                )
            )
        elif i.status != "valid":
            findings.append(Finding(Severity.WARNING, f"{who}: {status}, not VALID ({for_})"))
        lag, when = (
            (i.reported_lag, "at its last heartbeat")
            if i.reported_lag is not None
            else (i.lag, "the log end now")
        )
        if lag is not None and lag > limits.max_lag:
            findings.append(
                Finding(
                    Severity.WARNING,
                    f"{who}: {lag} log records behind {when} (limit {limits.max_lag})",
                )
            )
    if live < limits.min_instances:
        findings.append(
            Finding(
                Severity.CRITICAL,
                f"{live} live SDK instances heard in the last {human_duration(report.window)} "
                f"(expected at least {limits.min_instances})",
            )
        )
    return findings
