"""``revocast replay`` and ``revocast check``: rebuild and inspect the revocation state.

``check`` exits 0 when the token is accepted, 1 when it is revoked or expired, 2 for a token
that is not a JWT (and bad settings or usage) and 3 when the log could not be read: no verdict,
which a script must not take for "revoked" (1) nor for "accepted".
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime
from typing import Any

from revocast.cli._common import CommandError
from revocast.cli._oparg import ops_settings, parse_time, progress

__all__ = ["EXIT_NO_VERDICT", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = subparsers.add_parser(
        "replay",
        help="rebuild the revocation state from the log locally and summarise it",
        description="Settings: KAFKA_BOOTSTRAP_SERVERS, REVOCAST_TOPIC, REVOCAST_EVENT_KEYS, "
        "REVOCAST_MAX_TOKEN_LIFETIME. Default start: where an SDK's replay starts (now minus the "
        "max token lifetime, the largest leeway and a 5-minute margin for publishers' clocks).",
    )
    start = replay.add_mutually_exclusive_group()
    start.add_argument("--since", metavar="TIME", help="ISO-8601 time or epoch seconds")
    start.add_argument("--from-beginning", action="store_true")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar")
    replay.set_defaults(func=_replay)

    check = subparsers.add_parser(
        "check",
        help="decode a token (without trusting it) and say which rule, if any, revokes it",
        description="Settings: as for 'revocast replay'. Exit 0 accepted, 1 revoked or "
        "expired, 2 not a JWT (or bad settings, usage), 3 Kafka could not be read (no verdict).",
    )
    check.add_argument("token", help="the JWT, or - to read it from standard input")
    check.set_defaults(func=_check)


EXIT_NO_VERDICT = 3
"""``check``'s exit code when the log could not be read (1 means revoked there)."""


def _run_replay(settings: Any, *, since: datetime | None, progress_bar: bool) -> Any:
    from revocast.ops import replay_log

    with progress("replaying", enabled=progress_bar, kafka_exit_code=EXIT_NO_VERDICT) as bar:
        return replay_log(
            settings,
            since=since,
            from_beginning=False,
            on_range=bar.on_range,
            on_record=bar.on_record,
        )


def _replay(args: argparse.Namespace) -> int:
    from revocast.ops import replay_log

    settings = ops_settings()
    since = parse_time(args.since) if args.since else None
    with progress("replaying", enabled=not args.no_progress) as bar:
        report = replay_log(
            settings,
            since=since,
            from_beginning=args.from_beginning,
            on_range=bar.on_range,
            on_record=bar.on_record,
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
    report = _run_replay(ops_settings(), since=None, progress_bar=False)
    result = check_token(token, report.state, now=time.time())
    print(result.render())
    return 0 if result.accepted else 1
