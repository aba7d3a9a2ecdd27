"""The ``revocast`` command line.

Each area of the system registers its own subcommands from a small module
(``_kafka.py``, ``_publish.py`` …) named in :data:`_COMMANDS`; a module
exposes ``register(subparsers)`` and sets ``func`` on each parser it adds. A command line
that names a command imports its module only (most pull in kafka-python and pydantic: the
whole set took ~0.5 s to import); the help, and a command line naming none, import them all.
Handlers return the process exit code. Errors that users can fix raise
:class:`CommandError` with a one-line message. Usage errors exit 2 as argparse's do, except
under ``status --check``, a Nagios plugin, for which 2 means CRITICAL: there they exit 3
(UNKNOWN).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from revocast.cli._common import CommandError

__all__ = ["CommandError", "main"]

_PUBLISH = "revocast.cli._publish"
_COMMANDS: dict[str, str] = {
    "kafka": "revocast.cli._kafka",
    "receiver": "revocast.cli._receiver",
    "revoke": _PUBLISH,
    "block": _PUBLISH,
    "unblock": _PUBLISH,
    "delete-subject": _PUBLISH,
    "bump-version": _PUBLISH,
    "keys": _PUBLISH,
    "topic": "revocast.cli._topic",
    "demo": "revocast.cli._demo",
    "replay": "revocast.cli._ops",
    "check": "revocast.cli._ops",
    "status": "revocast.cli._status",
    "rebuild-state": "revocast.cli._status",
    "streams": "revocast.cli._streams",
    "bench": "revocast.cli._bench",
}
"""Every command and the module that registers it; a test checks the two agree."""
_COMMAND_MODULES = tuple(dict.fromkeys(_COMMANDS.values()))
"""The modules in the order their commands are listed in the help."""


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Leaves the exit code of a usage error to :func:`main` (subcommand parsers are of this
    class too), which knows the whole command line."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


_EXIT_CODES = """\
exit codes:
  0    done (check: the token is accepted)
  1    a failure: Kafka unreachable, the topic missing or unsafe, the demo failing, no
       broker for 'kafka status' (check: the token is revoked or expired)
  2    bad usage, settings or input, or a local broker that would not start; the error
       is one line on stderr (status --check: 3)
  3    revoke, block...: queued in the outbox, not yet in effect; check: no verdict
       (Kafka unreachable); status --check: UNKNOWN
  130  interrupted (Ctrl-C)
A command's --help gives its own codes."""


def _modules_for(argv: Sequence[str]) -> tuple[str, ...]:
    """The module of the command ``argv`` names, or every module: for the help, a usage
    error's list of commands, or a command line this cannot read (``-h`` before the
    command, ``--``…). The only top-level option besides ``-h`` takes no value, so the
    command is the first argument that is not ``-v``."""
    for arg in argv:
        if arg not in ("-v", "--verbose"):
            module = _COMMANDS.get(arg)
            return _COMMAND_MODULES if module is None else (module,)
    return _COMMAND_MODULES


def _build_parser(modules: Sequence[str] = _COMMAND_MODULES) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="revocast",
        description="Revocast: JWT revocation broadcast over Kafka, verified locally.",
        epilog=_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level (kafka-python at INFO: its DEBUG log shows credentials)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in modules:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_given = sys.argv[1:] if argv is None else argv
    parser = _build_parser(_modules_for(args_given))
    try:
        args = parser.parse_args(args_given)
    except _UsageError as exc:
        from revocast.cli._status import usage_exit_code

        exc.parser.print_usage(sys.stderr)
        usage_code = usage_exit_code(args_given)
        exc.parser.exit(usage_code, f"{exc.parser.prog}: error: {exc.message}\n")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:
        # kafka-python logs its clients' whole configuration and every request at DEBUG: the
        # SASL password and SASL/PLAIN's authentication bytes among them.
        logging.getLogger("kafka").setLevel(logging.INFO)
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"revocast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code
