"""``revocast topic ensure``: create the revocation topic safely, or check the existing one.

Exit 0 when the topic is safe, 1 when it exists with unsafe settings (each printed), 2 for
bad arguments (including a retention shorter than twice the max token lifetime).
"""

from __future__ import annotations

import argparse
import os
import re

from producer import PublishError, UnsafeTopicConfigError, ensure_topic
from revocast._lifetime import env_token_lifetime
from revocast.cli._common import CommandError
from revocation_events import KafkaSettings, SettingsError

__all__ = ["parse_duration", "register"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``topic ensure``."""
    topic = subparsers.add_parser("topic", help="provision the revocation topic")
    commands = topic.add_subparsers(dest="topic_command", metavar="ACTION", required=True)
    ensure = commands.add_parser("ensure", help="create the topic or check its settings")
    ensure.add_argument("--partitions", type=int, default=6)
    ensure.add_argument(
        "--replication-factor", type=int, default=None, help="default: 3, or fewer brokers"
    )
    ensure.add_argument(
        "--retention", default=None, help="e.g. 7d, 36h (default: max(7d, 2 x lifetime))"
    )
    ensure.add_argument("--min-insync-replicas", type=int, default=None)
    ensure.add_argument(
        "--max-token-lifetime",
        default=None,
        help="default: $REVOCAST_MAX_TOKEN_LIFETIME seconds, else 1h",
    )
    ensure.set_defaults(func=_ensure)


def parse_duration(text: str, *, option: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``36h`` or ``7d``."""
    match = _DURATION.match(text)
    if match is None:
        raise CommandError(f"{option}: {text!r} is not a duration like 90s, 15m, 36h or 7d")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def _ensure(args: argparse.Namespace) -> int:
    try:
        kafka = KafkaSettings.from_env()
        if args.max_token_lifetime is not None:
            lifetime = parse_duration(args.max_token_lifetime, option="--max-token-lifetime")
        else:
            lifetime = env_token_lifetime(os.environ)
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    retention = None
    if args.retention is not None:
        retention = parse_duration(args.retention, option="--retention")
    try:
        report = ensure_topic(
            kafka,
            max_token_lifetime=lifetime,
            partitions=args.partitions,
            replication_factor=args.replication_factor,
            retention=retention,
            min_insync_replicas=args.min_insync_replicas,
        )
    except UnsafeTopicConfigError as exc:
        raise CommandError(str(exc)) from None
    except PublishError as exc:
        raise CommandError(str(exc), exit_code=1) from None
    verb = "created" if report.created else "exists"
    print(
        f"topic {report.topic} {verb}: {report.partitions} partitions, "
        f"replication factor {report.replication_factor}, "
        + ", ".join(f"{k}={v}" for k, v in report.configs.items())
    )
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"UNSAFE: {problem}")
    return 0 if report.ok else 1
