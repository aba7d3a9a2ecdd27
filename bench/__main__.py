"""Run the whole benchmark suite: ``python -m bench [--quick] [--out docs/]``.

Starts what it needs: a :class:`LocalKafkaBroker` unless ``$KAFKA_BOOTSTRAP_SERVERS`` is set,
a ``redis-server`` on a free loopback port, SQLite in a temp dir. Prints tables as it goes.
The full run writes ``benchmarks.md`` and PNG plots to ``--out`` (default ``docs/``); a quick
run writes them only when ``--out`` is given. Exit status 1 if any section raised; timings
never fail the run.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from bench import bootstrap, memory, propagation, request_path, throughput
from bench._common import kafka_broker
from bench._redis import redis_server
from bench.report import (
    SHORT_EXPIRY_S,
    Results,
    machine_info,
    summary,
    worst_window_ms,
    write_report,
)

__all__ = ["SECTIONS", "main"]

SECTIONS = ("propagation", "request", "throughput", "bootstrap", "memory")
_KAFKA_SECTIONS = {"propagation", "throughput", "bootstrap"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for CI (< 3 min on 2 cores)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where benchmarks.md and PNGs go (full: docs/)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default all: {','.join(SECTIONS)})",
    )
    return parser


def _section(res: Results, name: str, fn: Callable[[], None]) -> None:
    print(f"\n== {name} ==", flush=True)
    started = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # report every failure, run the other sections, exit 1
        traceback.print_exc()
        res.errors.append(f"{name}: {type(exc).__name__}: {exc}")
    print(f"({name}: {time.perf_counter() - started:.0f} s)", flush=True)


def run(args: argparse.Namespace, command: str) -> Results:
    quick: bool = args.quick
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    unknown = only - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown sections: {', '.join(sorted(unknown))}")
    res = Results(machine=machine_info(command), quick=quick)
    m = res.machine
    print(
        f"{m.cpus} CPUs ({m.cpu_model}), {m.ram_gib:.1f} GiB, Python {m.python}, "
        f"load {m.load_before[0]:.2f} {m.load_before[1]:.2f} {m.load_before[2]:.2f}"
    )
    started = time.perf_counter()

    def memory_section() -> None:
        for n in (100_000,) if quick else (100_000, 1_000_000):
            res.memory.append(("revoked jti", n, memory.jti_bytes(n)))
            print(f"revoked jti @ {n:>9,}: {res.memory[-1][2]:6.1f} bytes/entry", flush=True)
        n = 20_000 if quick else 100_000
        for rule in memory.SUBJECT_RULES:
            res.memory.append((rule, n, memory.subject_bytes(rule, n)))
            print(f"{rule} @ {n:>9,}: {res.memory[-1][2]:6.1f} bytes/entry", flush=True)

    def request_section() -> None:
        with redis_server() as client:
            print(request_path.HEADER)
            sizes = (0, 100_000) if quick else (0, 100_000, 1_000_000)
            res.request_path.extend(request_path.run(client, sizes, quick))

    if "request" in only:
        _section(res, "request-path cost", request_section)
    if "memory" in only:
        _section(res, "memory", memory_section)
    if only & _KAFKA_SECTIONS:
        try:
            with kafka_broker() as servers:
                m.broker = (
                    f"external ({servers})"
                    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
                    else "LocalKafkaBroker (single node, KRaft, loopback)"
                )
                _kafka_sections(res, servers, only, quick)
        except Exception as exc:  # the broker itself failed to start or stop
            traceback.print_exc()
            res.errors.append(f"kafka broker: {type(exc).__name__}: {exc}")
    res.seconds = time.perf_counter() - started
    m.finish()
    return res


def _kafka_sections(res: Results, servers: str, only: set[str], quick: bool) -> None:
    def propagation_section() -> None:
        print(propagation.HEADER)
        ns, rates, seconds = (
            ((1, 5), (10, 100), 3.0) if quick else ((1, 5, 10, 20), (10, 100, 1000), 5.0)
        )
        # The target N again with gc_freeze_when_ready (quick: N=1, so the path never rots).
        freeze = (1,) if quick else (10,)
        propagation.run(servers, ns, rates, seconds, res.propagation, freeze)

    def throughput_section() -> None:
        res.throughput = throughput.run(servers, 1000, 5.0 if quick else 15.0)
        print(throughput.format_result(res.throughput))
        throughput.check_applied(res.throughput)

    def bootstrap_section() -> None:
        print(bootstrap.HEADER)
        sizes = [10_000] if quick else [10_000, 100_000, 1_000_000]
        bootstrap.run(servers, sizes, res.bootstrap)

    if "propagation" in only:
        _section(res, "propagation", propagation_section)
    if "throughput" in only:
        _section(res, "throughput under load", throughput_section)
    if "bootstrap" in only:
        _section(res, "bootstrap", bootstrap_section)


def _report(res: Results, out: Path | None, *, quick: bool) -> None:
    """Write the report to ``out`` (full run: ``docs/``). A quick run without ``--out``
    still renders the markdown and every plot, into a directory removed afterwards, so that
    CI catches a report or plot that no longer builds from the results."""
    if out is not None or not quick:
        print(f"report: {write_report(res, out if out is not None else Path('docs'))}")
        return
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        path = write_report(res, Path(tmp))
        print(f"report: rendered ({path.stat().st_size:,} bytes, not kept; --out keeps it)")


def main(argv: Sequence[str] | None = None, prog: str = "python -m bench") -> int:
    args = _parser().parse_args(argv)
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    res = run(args, command)
    print("\n== summary ==")
    for what, result, target, status in summary(res):
        print(f"{what:<70} {result:<40} {target:<28} {status}")
    if res.propagation:
        worst = worst_window_ms(res.propagation)
        print(
            f"(15-minute tokens: a revoked token keeps working up to {SHORT_EXPIRY_S} s; "
            f"worst p99 here, from the publish() call, {worst:.1f} ms)"
        )
    try:
        _report(res, args.out, quick=args.quick)
    except Exception as exc:
        traceback.print_exc()
        res.errors.append(f"report: {type(exc).__name__}: {exc}")
    print(f"total {res.seconds:.0f} s; load average at end {res.machine.load_after}")
    if res.errors:
        print("\nERRORS:\n  " + "\n  ".join(res.errors), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
