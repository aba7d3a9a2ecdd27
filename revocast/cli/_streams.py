"""``revocast streams``: run the stream processor worker (``faust -A streams.app worker``)."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys

from revocast.cli._common import CommandError

__all__ = ["register", "worker_argv"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``streams``."""
    parser = subparsers.add_parser(
        "streams",
        help="run the streams worker (state topic, stats, alerts)",
        description=(
            "Run the faust worker of the streams app; settings come from the environment "
            "(KAFKA_BOOTSTRAP_SERVERS, REVOCAST_TOPIC, REVOCAST_STATE_TOPIC, "
            "REVOCAST_SNAPSHOT_TOPIC, REVOCAST_EVENT_KEYS, REVOCAST_STREAMS_*). "
            "Extra arguments go to 'faust worker' (default: -l info --without-web)."
        ),
    )
    parser.add_argument("worker_args", nargs=argparse.REMAINDER, help="faust worker options")
    parser.set_defaults(func=_run)


def worker_argv(worker_args: list[str]) -> list[str]:
    """The command line that runs the worker in this interpreter."""
    args = worker_args[1:] if worker_args[:1] == ["--"] else worker_args
    return [
        sys.executable,
        "-m",
        "faust",
        "-A",
        "streams.app",
        "worker",
        *(args or ["-l", "info", "--without-web"]),
    ]


def _run(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("faust") is None:
        raise CommandError("the streams worker needs faust: pip install 'revocast[streams]'")
    argv = worker_argv(list(args.worker_args))
    sys.stdout.flush()
    sys.stderr.flush()
    # exec, not a child: SIGTERM from a supervisor reaches faust, which shuts down cleanly.
    os.execv(argv[0], argv)  # noqa: S606 - our interpreter and fixed arguments, no shell
    return 0  # pragma: no cover - execv does not return
