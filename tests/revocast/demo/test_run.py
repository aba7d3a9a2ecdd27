"""run_demo's choices before any process starts: ports, and a broker that is not there."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from revocast.demo import StackConfig, _run
from revocast.demo._launcher import free_port


def test_taken_documented_ports_are_replaced_by_four_distinct_free_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each pick is free when made, so the same port can come back twice in a row.
    picks = iter([9001, 9001, 9002, 9001, 9003, 9004])
    monkeypatch.setattr(_run, "port_is_free", lambda host, port: port != 8000)
    monkeypatch.setattr(_run, "free_port", lambda host="127.0.0.1": next(picks))

    cfg = _run._ports(StackConfig())

    ports = (cfg.identity_port, cfg.orders_port, cfg.billing_port, cfg.inventory_port)
    assert ports == (9001, 9002, 9003, 9004)


def test_free_documented_ports_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_run, "port_is_free", lambda host, port: True)
    assert _run._ports(StackConfig()) == StackConfig()


def test_an_unreachable_broker_names_kafka_without_a_traceback_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    result = subprocess.run(
        [sys.executable, "-m", "revocast.cli", "demo", "--scenario-only"],
        env={**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "TMPDIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1
    assert f"demo could not start: kafka at {bootstrap}" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []
