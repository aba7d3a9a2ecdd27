"""Operator tooling behind ``revocast replay``, ``revocast check`` and ``revocast status``."""

from revocast.ops._check import TokenCheck, check_token, decode_untrusted
from revocast.ops._reader import LogRange, OpsKafkaError, read_range
from revocast.ops._replay import ReplayReport, replay_log
from revocast.ops._settings import OpsSettings

__all__ = [
    "LogRange",
    "OpsKafkaError",
    "OpsSettings",
    "ReplayReport",
    "TokenCheck",
    "check_token",
    "decode_untrusted",
    "read_range",
    "replay_log",
]
