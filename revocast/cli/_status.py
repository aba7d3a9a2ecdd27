"""``revocast status`` and ``revocast rebuild-state``: watch the topics and SDKs, repair the
state topic.

``status`` exits 1 when the log topic is unsafe (retention shorter than twice the max token
lifetime, size-based deletion, compaction); stale SDK instances are flagged in the table but
do not change the exit code. With ``--check`` it exits as a Nagios plugin does instead (see
:class:`revocast.ops.Severity`) and prints a one-line verdict to stderr when not OK. Both
commands exit 1 with one line for an unreachable broker or a missing topic (``--check``: 3,
as for bad option values and usage errors).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from revocast.cli._common import CommandError
from revocast.cli._oparg import ops_settings, parse_time, progress
from revocast.cli._topic import parse_duration

if TYPE_CHECKING:
    from revocast.ops import CheckThresholds

__all__ = ["register", "usage_exit_code"]

_USAGE_ERROR = 2
_UNKNOWN = 3
"""``Severity.UNKNOWN``, without importing the ops package for a usage error."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = subparsers.add_parser(
        "status",
        help="log topic offsets and retention, state topic lag, live SDK instances",
        description="Settings: KAFKA_BOOTSTRAP_SERVERS, REVOCAST_TOPIC, "
        "REVOCAST_MAX_TOKEN_LIFETIME (default 1h), REVOCAST_HEARTBEAT_TOPIC "
        "(default <topic>.heartbeats), REVOCAST_STATE_TOPIC (default <topic>.state; as the "
        "streams worker and the SDKs read it, with REVOCAST_SNAPSHOT_TOPIC). Exit 1 when "
        "the log topic is UNSAFE or Kafka cannot be read; with --check, the exit codes below.",
        epilog=_CHECK_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
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
    status.add_argument(
        "--check",
        action="store_true",
        help="exit with the health verdict (0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) and "
        "print why to stderr",
    )
    status.add_argument(
        "--json", action="store_true", help="print the report and the verdict as JSON"
    )
    status.add_argument(
        "--max-lag",
        default="1000",
        metavar="N",
        help="WARNING when an SDK instance was more than N log records behind at its last "
        "heartbeat, by its own count (default 1000)",
    )
    status.add_argument(
        "--max-state-lag",
        default="10000",
        metavar="N",
        help="WARNING when the state topic is more than N log records behind (default 10000)",
    )
    status.add_argument(
        "--max-interrupted",
        default="30s",
        metavar="DURATION",
        help="CRITICAL when an instance has been INTERRUPTED longer than this, else WARNING "
        "(default 30s, the SDK's default max_staleness), counted from when the instance "
        "says it was interrupted (an older SDK does not say: from its first INTERRUPTED "
        "heartbeat heard, a lower bound)",
    )
    status.add_argument(
        "--min-instances",
        default="1",
        metavar="N",
        help="CRITICAL when fewer than N live SDK instances were heard in the window "
        "(default 1; 0 to expect none)",
    )
    status.set_defaults(func=_status)

    rebuild = subparsers.add_parser(
        "rebuild-state",
        help="re-derive the compacted state topic from the log (safe while SDKs run)",
        description="Replays the log (and, unless --log-only, the existing state topic) "
        "with the streams worker's rule logic and writes the winning records, tombstones and "
        "offset markers to the state topic (REVOCAST_STATE_TOPIC, default <topic>.state, as "
        "the streams worker and the SDKs read it), creating it if missing as the streams "
        "worker would (REVOCAST_STREAMS_REPLICATION_FACTOR, REVOCAST_STREAMS_STATE_*). "
        "Refuses while a streams worker consumes the log, or when it cannot tell (no Describe "
        "on the worker's group, REVOCAST_STREAMS_APP_ID). Settings: as for 'revocast replay'.",
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
        help="skip the streams worker check: run even while a worker consumes the log (it "
        "races with this) or when this principal cannot see the worker's consumer group",
    )
    rebuild.add_argument("--no-progress", action="store_true", help="no progress bar")
    rebuild.set_defaults(func=_rebuild)


_CHECK_EPILOG = """\
--check exit codes (Nagios plugin conventions):
  0 OK        no finding
  1 WARNING   an SDK instance INITIALIZING, INTERRUPTED up to --max-interrupted or more
              than --max-lag records behind at its last heartbeat; the state topic past
              --max-state-lag or missing an offset marker
  2 CRITICAL  the log topic UNSAFE (retention, retention.bytes, compaction); an instance
              INTERRUPTED past --max-interrupted or STALE (no heartbeat); fewer than
              --min-instances live instances in --window, or no heartbeat topic
  3 UNKNOWN   Kafka unreachable, the log topic missing, bad settings, option values or
              usage (an unknown option, a missing value)
"""


def usage_exit_code(argv: Sequence[str]) -> int:
    """The exit code of a usage error in ``argv``: 3 (UNKNOWN) when it asks for ``status
    --check``, whose monitor would read argparse's 2 as CRITICAL; else 2.

    ``--check`` is recognised as argparse recognises it, abbreviations included (``--che``;
    ``--c`` could also be ``--create``).
    """
    probe = _Probe(add_help=False)
    probe.add_argument("command", nargs="?")
    probe.add_argument("--check", action="store_true")
    probe.add_argument("--create", action="store_true")
    try:
        known, _ = probe.parse_known_args(argv)
        check = known.command == "status" and known.check
    except argparse.ArgumentError:  # ``--check=yes``, an ambiguous ``--c``
        check = "status" in argv and any(arg.startswith("--check") for arg in argv)
    return _UNKNOWN if check else _USAGE_ERROR


class _Probe(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise argparse.ArgumentError(None, message)


def _count(text: str, option: str) -> int:
    if not text.strip().isdecimal():
        raise CommandError(f"{option}: {text!r} is not a whole number >= 0")
    return int(text)


def _thresholds(args: argparse.Namespace) -> CheckThresholds:
    from revocast.ops import CheckThresholds

    return CheckThresholds(
        max_lag=_count(args.max_lag, "--max-lag"),
        max_state_lag=_count(args.max_state_lag, "--max-state-lag"),
        max_interrupted=parse_duration(args.max_interrupted, option="--max-interrupted"),
        min_instances=_count(args.min_instances, "--min-instances"),
    )


def _status(args: argparse.Namespace) -> int:
    from revocast.ops import Severity

    try:
        return _run_status(args)
    except CommandError as exc:
        if args.check:
            # 1 and 2 mean WARNING and CRITICAL to a monitor: no verdict is UNKNOWN.
            raise CommandError(str(exc), exit_code=int(Severity.UNKNOWN)) from exc
        raise


def _run_status(args: argparse.Namespace) -> int:
    from revocast._lifetime import env_token_lifetime
    from revocast.ops import OpsKafkaError, check_status, collect_status, ensure_heartbeat_topic
    from revocation_events import KafkaSettings, SettingsError, env_str
    from streams._settings import derived_topics, topic_overrides

    window = parse_duration(args.window, option="--window")
    stale = None if args.stale is None else parse_duration(args.stale, option="--stale")
    try:
        thresholds = _thresholds(args)
        kafka = KafkaSettings.from_env()
        lifetime = env_token_lifetime(os.environ)
        beats = env_str(os.environ, "REVOCAST_HEARTBEAT_TOPIC") or f"{kafka.topic}.heartbeats"
        # Both names, checked as the worker checks them, though only the state topic is read.
        state_topic, _ = derived_topics(kafka.topic, **topic_overrides(os.environ))
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    try:
        if args.create and ensure_heartbeat_topic(kafka, beats):
            # stdout may be the JSON document.
            print(f"created heartbeat topic {beats}", file=sys.stderr if args.json else None)
        report = collect_status(
            kafka,
            max_token_lifetime=lifetime,
            heartbeat_topic=beats,
            state_topic=state_topic,
            window=window,
            stale=stale,
        )
    except OpsKafkaError as exc:
        raise CommandError(str(exc), exit_code=1) from exc
    verdict = check_status(report, thresholds)
    if args.json:
        print(json.dumps({**report.as_dict(), "check": verdict.as_dict()}, indent=2))
    else:
        print(report.render())
        if args.check:
            print(verdict.render())
    if not args.check:
        return 0 if report.ok else 1
    if verdict.findings:
        print(f"revocast status: {verdict.summary()}", file=sys.stderr)
    return verdict.exit_code


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
