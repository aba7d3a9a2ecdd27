"""``python -m bench``: what a quick run (the one CI runs) exercises besides the measurements."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

import bench.__main__ as cli
from bench.report import Results, write_report
from tests.bench._results import results


def _fake_run(res: Results) -> object:
    def run(_args: argparse.Namespace, _command: str) -> Results:
        return res

    return run


def test_a_quick_run_without_out_still_renders_the_report_and_keeps_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rendered: list[Path] = []

    def recording_write(res: Results, out: Path) -> Path:
        path = write_report(res, out)
        rendered.extend(sorted(out.iterdir()))
        return path

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "run", _fake_run(results()))
    monkeypatch.setattr(cli, "write_report", recording_write)
    assert cli.main(["--quick"]) == 0
    assert {p.name for p in rendered} >= {"benchmarks.md", "bench-propagation.png"}
    assert not any(p.exists() for p in rendered)
    assert list(tmp_path.iterdir()) == []


def test_a_quick_run_whose_report_no_longer_builds_exits_1(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(_res: Results, _out: Path) -> Path:
        raise KeyError("a field the report still reads")

    monkeypatch.setattr(cli, "run", _fake_run(results()))
    monkeypatch.setattr(cli, "write_report", broken)
    assert cli.main(["--quick"]) == 1


def test_a_quick_run_with_out_keeps_the_report_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cli, "run", _fake_run(results()))
    assert cli.main(["--quick", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "benchmarks.md").is_file()
