"""The README's main command, end to end against a real broker, as CI runs it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_the_demo_scenario_passes_every_check_across_all_services(kafka_bootstrap: str) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap}
    result = subprocess.run(
        [sys.executable, "-m", "revocast.cli", "demo", "--scenario-only"],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "FAIL" not in result.stdout
    for service in ("orders", "billing", "inventory"):
        assert f"admin blocks carol                           {service}" in result.stdout
    summary = [line for line in result.stdout.splitlines() if "checks passed" in line]
    assert len(summary) == 1
    passed, total = summary[0].split()[0].split("/")
    assert passed == total
    assert int(total) >= 45
