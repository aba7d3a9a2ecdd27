"""The propagation benchmark's tail diagnosis (the benchmark itself runs in CI as
``python -m bench --quick``)."""

from __future__ import annotations

import math

from bench.propagation import tail_shared


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
