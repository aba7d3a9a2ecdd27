"""``revocast bench``: the benchmark suite, a shortcut for ``python -m bench`` in a checkout."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from revocast.cli._common import CommandError

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bench",
        help="run the benchmark suite (propagation, request path, bootstrap, memory)",
        description="Same as 'python -m bench'; run it from a source checkout.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for CI (< 3 min)")
    parser.add_argument("--out", default=None, help="where benchmarks.md and PNGs go")
    parser.add_argument("--only", default=None, help="comma-separated sections to run")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    try:
        bench_main = importlib.import_module("bench.__main__")
    except ModuleNotFoundError as exc:
        if exc.name not in ("bench", "bench.__main__"):
            raise
        raise CommandError(
            "the benchmarks live in the source checkout (bench/): run this from its root"
        ) from exc
    argv = ["--quick"] if args.quick else []
    argv += ["--out", args.out] if args.out is not None else []
    argv += ["--only", args.only] if args.only is not None else []
    code: int = bench_main.main(argv, prog="revocast bench")
    return code
