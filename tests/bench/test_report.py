"""The request-path section of the report: the PostgreSQL column and its ratio."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from bench.report import summary, write_report
from tests.bench._results import results


def test_the_report_shows_the_postgresql_lookup_and_its_ratio_to_revocast(
    tmp_path: Path,
) -> None:
    res = results()
    text = write_report(res, tmp_path).read_text()
    assert "| + PostgreSQL | added | added, direct |" in text
    # 120 - 29 end to end; 95 direct; 95 / 0.9 = 106x Revocast's direct work.
    assert "| 130.0 | +91.0 | +95.0 | 56x | 106x |" in text
    rows = {what: result for what, result, _, _ in summary(res)}
    assert rows["PostgreSQL lookup added / Revocast added, both direct (worst cell)"] == (
        "106x (+95-95 µs per request)"
    )


def test_a_run_without_postgresql_says_why_in_the_column_and_the_summary(
    tmp_path: Path,
) -> None:
    res = results()
    nan = float("nan")
    res.request_path[0] = replace(
        res.request_path[0],
        postgres_us=nan,
        postgres_best_us=nan,
        postgres_direct_us=nan,
        postgres_note="PostgreSQL not found",
    )
    text = write_report(res, tmp_path).read_text()
    assert "| n/a | n/a | n/a | 56x | n/ax |" not in text
    assert "| n/a | n/a | n/a | 56x | n/a |" in text
    assert "PostgreSQL columns not measured in this run: PostgreSQL not found." in text
    rows = {what: result for what, result, _, _ in summary(res)}
    assert rows["PostgreSQL lookup added / Revocast added, both direct (worst cell)"] == (
        "not measured: PostgreSQL not found"
    )
