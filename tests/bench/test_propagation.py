"""The propagation benchmark's tail diagnosis (the benchmark itself runs in CI as
``python -m bench --quick``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.propagation import (
    MIN_SAMPLES,
    Published,
    check_applied,
    phase_count,
    summarise,
    tail_shared,
)
from bench.report import worst_window_ms
from tests.bench._results import results

Collected = tuple[str, dict[str, int], dict[str, int], float, int]


def test_the_tail_is_shared_when_most_processes_were_late_for_the_same_revocation() -> None:
    latencies = {
        0: [1.0, 30.0, 30.0, 30.0],  # three of four late: a delay before the consumers
        1: [1.0, 1.0, 1.0, 40.0],  # one process late on its own
        2: [1.0, 1.0, 1.0, 1.0],
    }
    assert tail_shared(latencies, p99=30.0) == 0.75


def test_half_the_processes_late_counts_as_shared_and_no_tail_is_not_a_number() -> None:
    assert tail_shared({0: [50.0, 1.0]}, p99=50.0) == 1.0
    assert tail_shared({0: [50.0, 1.0, 1.0]}, p99=50.0) == 0.0
    assert math.isnan(tail_shared({0: [1.0]}, p99=50.0))


def _consumer(seen: dict[str, int], verified: dict[str, int] | None = None) -> Collected:
    return ("collected", seen, verified or {}, 0.01, 0)


def test_each_sample_is_timed_from_the_publish_call_as_well_as_from_its_return() -> None:
    # Revocation 0: called at 0 ms, acked back at 20 ms, applied at 5 ms (before the ack
    # reached the publisher): -15 ms from the return, 5 ms from the call.
    ms = 1_000_000
    published = Published(called=[0, 100 * ms], returned=[20 * ms, 102 * ms], achieved_rate=10)
    row = summarise("p", 10, published, [_consumer({"p-0": 5 * ms, "p-1": 103 * ms})], 0.0, 1.0)
    assert (row.p50_ms, row.max_ms) == (-15.0, 1.0)
    assert (row.call_p50_ms, row.call_p99_ms) == (3.0, 5.0)
    assert row.ack_p50_ms == 2.0  # acks of 20 and 2 ms: the lower middle


def test_a_revocation_a_process_never_applied_is_missing_not_a_fast_sample() -> None:
    ms = 1_000_000
    published = Published(called=[0, 0], returned=[ms, ms], achieved_rate=10)
    row = summarise(
        "p", 10, published, [_consumer({"p-0": 2 * ms}), _consumer({"p-1": 9 * ms})], 0.0, 1.0
    )
    assert (row.samples, row.missing) == (2, 2)
    assert (row.p50_ms, row.max_ms) == (1.0, 8.0)


def test_the_short_expiry_window_is_the_worst_p99_from_the_publish_call() -> None:
    rows = results().propagation
    row = rows[0]
    slow_ack = replace(row, p99_ms=4.0, call_p99_ms=30.0)
    assert worst_window_ms([row, slow_ack]) == 30.0
    assert worst_window_ms([replace(row, call_p99_ms=math.nan)]) == row.p99_ms


def test_a_phase_with_a_revocation_never_applied_fails_the_run() -> None:
    row = results().propagation[0]
    check_applied([row])
    with pytest.raises(RuntimeError, match=r"N=1 10/s: 1 of 31"):
        check_applied([row, replace(row, missing=1)])


def test_a_low_rate_phase_with_one_process_runs_longer_to_collect_min_samples() -> None:
    # N=1 at 10/s for 5 s gave 50 samples: nearest-rank p99 of 50 is the maximum.
    assert phase_count(10, 5.0, processes=1, min_samples=MIN_SAMPLES) == 200
    assert phase_count(10, 5.0, processes=5, min_samples=MIN_SAMPLES) == 50  # 250 samples


def test_every_phase_of_the_full_run_collects_at_least_min_samples_and_fast_ones_keep_theirs() -> (
    None
):
    for n in (1, 5, 10, 20):
        for rate in (10, 100, 1000):
            count = phase_count(rate, 5.0, processes=n, min_samples=MIN_SAMPLES)
            assert count * n >= MIN_SAMPLES
            assert count == max(rate * 5, math.ceil(MIN_SAMPLES / n))
    assert phase_count(1000, 5.0, processes=1, min_samples=MIN_SAMPLES) == 5000
