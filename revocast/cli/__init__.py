"""The ``revocast`` command line.

Each area of the system registers its own subcommands from a small module
(``_kafka.py``, ``_publish.py`` …) listed in :data:`_COMMAND_MODULES`; a module
exposes ``register(subparsers)`` and sets ``func`` on each parser it adds.
Handlers return the process exit code. Errors that users can fix raise
:class:`CommandError` with a one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from revocast.cli._common import CommandError

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


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="revocast",
        description="Revocast: JWT revocation broadcast over Kafka, verified locally.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except CommandError as exc:
        print(f"revocast: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code
