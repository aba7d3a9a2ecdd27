"""``revocast replay`` and ``revocast check``: rebuild and inspect the revocation state."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

from revocast.cli._common import CommandError

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = subparsers.add_parser(
        "replay",
        help="rebuild the revocation state from the log locally and summarise it",
        description="Settings: KAFKA_BOOTSTRAP_SERVERS, REVOCAST_TOPIC, REVOCAST_EVENT_KEYS, "
        "REVOCAST_MAX_TOKEN_LIFETIME. Default start: now minus the max token lifetime.",
    )
    start = replay.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="TIME", help="ISO-8601 time or epoch seconds")
    start.add_argument("--from-beginning", action="store_true")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)

    check = subparsers.add_parser(
        "check",
        help="decode a token (without trusting it) and say which rule, if any, revokes it",
    )
    check.add_argument("token", help="the JWT, or - to read it from standard input")
    check.set_defaults(func=_check)


def _settings() -> Any:
    from revocast.ops import OpsSettings
    from revocation_events import SettingsError

    try:
        return OpsSettings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc


def _parse_time(text: str) -> datetime:
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since: not a time: {text!r} (ISO-8601 or epoch seconds)") from None
    if parsed.tzinfo is None:
        raise CommandError(f"--since: {text!r} has no timezone (add Z or +00:00)")
    return parsed


def _run_replay(
    settings: Any, *, since: datetime | None, from_beginning: bool, progress: bool
) -> Any:
    from tqdm import tqdm

    from revocast.ops import OpsKafkaError, replay_log

    bar: Any = None

    def on_range(log_range: Any) -> None:
        nonlocal bar
        bar = tqdm(
            total=log_range.total,
            unit="ev",
            unit_scale=True,
            file=sys.stderr,
            disable=not progress,
            desc="replaying",
        )

    def on_record() -> None:
        bar.update()

    try:
        return replay_log(
            settings,
            since=since,
            from_beginning=from_beginning,
            on_range=on_range,
            on_record=on_record,
        )
    except OpsKafkaError as exc:
        raise CommandError(str(exc), exit_code=1) from exc
    finally:
        if bar is not None:
            bar.close()


def _replay(args: argparse.Namespace) -> int:
    settings = _settings()
    since = _parse_time(args.since) if args.since else None
    report = _run_replay(
        settings,
        since=since,
        from_beginning=args.from_beginning,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    print(report.summary())
    return 0


def _check(args: argparse.Namespace) -> int:
    import jwt

    from revocast.ops import check_token, decode_untrusted

    from_stdin = args.token == "-"  # noqa: S105 - "-" means standard input, not a secret
    token = (sys.stdin.read() if from_stdin else args.token).strip()
    try:
        decode_untrusted(token)
    except jwt.InvalidTokenError as exc:
        raise CommandError(f"not a JWT: {exc}") from None
    settings = _settings()
    report = _run_replay(settings, since=None, from_beginning=False, progress=False)
    result = check_token(token, report.state, now=time.time())
    print(result.render())
    return 0 if result.accepted else 1
