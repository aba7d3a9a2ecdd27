"""Synthetic benchmark results: one row of every section, for the report and CLI tests."""

from __future__ import annotations

from bench.bootstrap import BootstrapRow
from bench.propagation import PropagationRow
from bench.report import Machine, Results
from bench.request_path import RequestRow
from bench.throughput import ThroughputResult

__all__ = ["results"]


def results(*, quick: bool = True) -> Results:
    machine = Machine(
        command="python -m bench --quick",
        cpus=2,
        cpu_model="test",
        ram_gib=1.0,
        python="3.11",
        versions={"PyJWT": "2"},
        load_before=(0.1, 0.2, 0.3),
        load_after=(0.4, 0.5, 0.6),
        broker="external (test)",
    )
    res = Results(machine=machine, quick=quick)
    res.propagation.append(
        PropagationRow(
            processes=1,
            rate=10,
            achieved_rate=10.0,
            revocations=30,
            samples=30,
            missing=0,
            p50_ms=1.0,
            p99_ms=4.0,
            max_ms=5.0,
            verify_samples=30,
            verify_p50_ms=1.5,
            verify_p99_ms=4.5,
            ack_p50_ms=3.0,
            consumer_cpu_ms=1.0,
            gc_max_ms=0.1,
            cpu_cores=0.1,
        )
    )
    res.request_path.append(
        RequestRow(
            "HS256",
            100_000,
            bare_us=30.0,
            revocast_us=31.0,
            redis_us=80.0,
            sqlite_us=40.0,
            check_us=0.3,
            best=(29.0, 30.0, 79.0, 39.0),
            direct_us=0.9,
            cached_us=2.0,
            redis_direct_us=50.0,
            postgres_us=130.0,
            postgres_best_us=120.0,
            postgres_direct_us=95.0,
        )
    )
    res.throughput = ThroughputResult(
        threads=4,
        seconds=5.0,
        idle_per_s=20_000.0,
        loaded_per_s=15_000.0,
        target_rate=1000,
        achieved_rate=990.0,
        applied=5001,
        published=5001,
        lags=(10, 20, 10),
        final_lag=0,
        drain_s=0.1,
        idle_after_per_s=19_000.0,
    )
    res.bootstrap.append(BootstrapRow(10_000, 1.0, True, 0.3, 10_000, 1.2, 0.6, 0.5, 3))
    res.memory.append(("revoked jti", 100_000, 38.0))
    return res
