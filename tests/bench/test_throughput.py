"""The throughput benchmark's verdicts (the benchmark itself runs in CI as
``python -m bench --quick``)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from bench.throughput import check_applied
from tests.bench._results import results


def test_the_loaded_rate_is_compared_with_the_mean_of_the_idle_rates_before_and_after() -> None:
    t = results().throughput
    assert t is not None
    drifted = replace(t, idle_per_s=20_000.0, idle_after_per_s=10_000.0, loaded_per_s=15_000.0)
    assert drifted.baseline_per_s == 15_000.0
    assert drifted.ratio == 1.0
    assert replace(t, idle_after_per_s=math.nan).baseline_per_s == t.idle_per_s


def test_lag_is_not_bounded_when_it_does_not_drain_or_a_revocation_was_not_applied() -> None:
    t = results().throughput
    assert t is not None
    assert t.bounded
    assert not replace(t, final_lag=3).bounded
    assert not replace(t, applied=t.published - 1).bounded
    assert not replace(t, lags=()).bounded


def test_lag_that_keeps_growing_over_the_run_is_not_bounded() -> None:
    t = results().throughput
    assert t is not None
    assert not replace(t, lags=(10, 200, 400, 600, 800, 1000)).bounded


def test_a_revocation_published_but_never_applied_fails_the_run() -> None:
    t = results().throughput
    assert t is not None
    check_applied(t)
    with pytest.raises(RuntimeError, match="5,000 of 5,001"):
        check_applied(replace(t, applied=5_000))
