"""The ``revocast`` command line.

Each area of the system registers its own subcommands from a small module
(``_kafka.py``, ``_publish.py`` …) listed in :data:`_COMMAND_MODULES`; a module
exposes ``register(subparsers)`` and sets ``func`` on each parser it adds.
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
from revocast.cli._status import usage_exit_code

__all__ = ["CommandError", "main"]

_COMMAND_MODULES = (
    "revocast.cli._kafka",
    "revocast.cli._receiver",
    "revocast.cli._publish",
    "revocast.cli._topic",
    "revocast.cli._demo",
    "revocast.cli._ops",
    "revocast.cli._status",
    "revocast.cli._streams",
    "revocast.cli._bench",
)


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


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="revocast",
        description="Revocast: JWT revocation broadcast over Kafka, verified locally.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log at DEBUG level (kafka-python at INFO: its DEBUG log shows credentials)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        usage_code = usage_exit_code(sys.argv[1:] if argv is None else argv)
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
