"""``revocast status`` and ``revocast rebuild-state``: watch the topics and SDKs, repair the
state topic.

``status`` exits 1 when the log topic is unsafe (retention shorter than twice the max token
lifetime, size-based deletion, compaction); stale SDK instances are flagged in the table but
do not change the exit code. Both exit 1 with one line for an unreachable broker or a
missing topic.
"""

from __future__ import annotations

import argparse
import os

from revocast.cli._common import CommandError
from revocast.cli._oparg import ops_settings, parse_time, progress
from revocast.cli._topic import parse_duration

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status",
        help="log topic offsets and retention, state topic lag, live SDK instances",
        description="Settings: KAFKA_BOOTSTRAP_SERVERS, REVOCAST_TOPIC, "
        "REVOCAST_MAX_TOKEN_LIFETIME (default 1h), REVOCAST_HEARTBEAT_TOPIC "
        "(default <topic>.heartbeats). Exit 1 when the log topic is UNSAFE.",
    )
    status.add_argument(
        "--window", default="10m", help="heartbeats from this far back (default 10m)"
    )
    status.add_argument(
        "--stale",
        default=None,
        help="flag an instance STALE when its last heartbeat is older than this "
        "(default: 3 x its own heartbeat interval)",
    )
    status.add_argument(
        "--create",
        action="store_true",
        help="create the heartbeat topic if missing (delete policy, 1h retention, "
        "broker timestamps)",
    )
    status.set_defaults(func=_status)

    rebuild = subparsers.add_parser(
        "rebuild-state",
        help="re-derive the compacted state topic from the log (safe while SDKs run)",
        description="Replays the log (and, unless --log-only, the existing state topic) "
        "with the streams worker's rule logic and writes the winning records, tombstones and "
        "offset markers to <topic>.state, creating it if missing. Refuses while a streams "
        "worker consumes the log. Settings: as for 'revocast replay'.",
    )
    rebuild.add_argument(
        "--since",
        metavar="TIME",
        help="read the log from TIME (ISO-8601 or epoch seconds) instead of its beginning",
    )
    rebuild.add_argument(
        "--log-only",
        action="store_true",
        help="ignore the existing state topic: rules whose events left the log are dropped",
    )
    rebuild.add_argument(
        "--force",
        action="store_true",
        help="run even while a streams worker consumes the log (it races with this)",
    )
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")
    rebuild.set_defaults(func=_rebuild)


def _status(args: argparse.Namespace) -> int:
    from revocast.ops import OpsKafkaError, collect_status, ensure_heartbeat_topic
    from revocation_events import KafkaSettings, SettingsError, env_float, env_str

    window = parse_duration(args.window, option="--window")
    stale = None if args.stale is None else parse_duration(args.stale, option="--stale")
    try:
        kafka = KafkaSettings.from_env()
        lifetime = env_float(os.environ, "REVOCAST_MAX_TOKEN_LIFETIME") or 3600.0
        beats = env_str(os.environ, "REVOCAST_HEARTBEAT_TOPIC") or f"{kafka.topic}.heartbeats"
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    try:
        if args.create and ensure_heartbeat_topic(kafka, beats):
            print(f"created heartbeat topic {beats}")
        report = collect_status(
            kafka, max_token_lifetime=lifetime, heartbeat_topic=beats, window=window, stale=stale
        )
    except OpsKafkaError as exc:
        raise CommandError(str(exc), exit_code=1) from exc
    print(report.render())
    return 0 if report.ok else 1


def _rebuild(args: argparse.Namespace) -> int:
    from revocast.ops import rebuild_state

    settings = ops_settings()
    since = parse_time(args.since) if args.since else None
    with progress("replaying the log", enabled=not args.no_progress) as bar:
        report = rebuild_state(
            settings,
            since=since,
            log_only=args.log_only,
            force=args.force,
            on_range=bar.on_range,
            on_record=bar.on_record,
        )
    print(report.summary())
    return 0
