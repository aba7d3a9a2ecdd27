"""Operator tooling behind ``revocast replay``, ``check``, ``status`` and ``rebuild-state``."""

from revocast.ops._check import TokenCheck, check_token, decode_untrusted
from revocast.ops._reader import LogRange, OpsKafkaError, read_range
from revocast.ops._rebuild import (
    ForeignStateTopicError,
    RebuildReport,
    StreamsWorkerRunningError,
    StreamsWorkerUnknownError,
    UnverifiableRecordsError,
    rebuild_state,
    running_workers,
)
from revocast.ops._replay import ReplayReport, replay_log
from revocast.ops._settings import OpsSettings
from revocast.ops._status import (
    HEARTBEAT_RETENTION,
    Instance,
    LogStatus,
    StateStatus,
    StatusReport,
    collect_status,
    ensure_heartbeat_topic,
)
from revocast.ops._status_check import (
    CheckThresholds,
    Finding,
    Severity,
    StatusCheck,
    check_status,
)

__all__ = [
    "HEARTBEAT_RETENTION",
    "CheckThresholds",
    "Finding",
    "ForeignStateTopicError",
    "Instance",
    "LogRange",
    "LogStatus",
    "OpsKafkaError",
    "OpsSettings",
    "RebuildReport",
    "ReplayReport",
    "Severity",
    "StateStatus",
    "StatusCheck",
    "StatusReport",
    "StreamsWorkerRunningError",
    "StreamsWorkerUnknownError",
    "TokenCheck",
    "UnverifiableRecordsError",
    "check_status",
    "check_token",
    "collect_status",
    "decode_untrusted",
    "ensure_heartbeat_topic",
    "read_range",
    "rebuild_state",
    "replay_log",
    "running_workers",
]
