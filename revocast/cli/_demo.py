"""``revocast demo``: the live demo; ``revocast demo compose``: render docker-compose.yml."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from revocast.cli._common import CommandError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "demo", help="run the live demo: revocation propagating across several services"
    )
    parser.add_argument(
        "--scenario-only",
        action="store_true",
        help="play the scenario, check every answer, stop everything and exit (CI)",
    )
    parser.add_argument(
        "what",
        nargs="?",
        choices=("run", "compose"),
        default="run",
        help="'compose' prints docker-compose.yml for the same stack",
    )
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from revocast.demo import ScenarioFailed, render_compose, run_demo
    from revocast.demo._launcher import LaunchError

    if args.what == "compose":
        sys.stdout.write(render_compose())
        return 0
    try:
        return run_demo(scenario_only=args.scenario_only)
    except ScenarioFailed as exc:
        raise CommandError(f"demo scenario failed: {exc}", exit_code=1) from exc
    except LaunchError as exc:
        raise CommandError(f"demo could not start: {exc}", exit_code=1) from exc
