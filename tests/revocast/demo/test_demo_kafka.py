"""The README's main command, end to end against a real broker, as CI runs it."""

from __future__ import annotations

import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

DEMO = [sys.executable, "-m", "revocast.cli", "demo", "--scenario-only"]


def _descendants(root: int) -> set[int]:
    """Every live process under ``root`` (Linux /proc), gunicorn's workers included."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _pidfds(pids: set[int]) -> dict[int, int]:
    """A pidfd per process still running: it becomes readable when the process exits, and
    cannot mistake a later process reusing the pid for it."""
    fds: dict[int, int] = {}
    for pid in pids:
        try:
            fds[pid] = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
    return fds


def _still_running(fds: dict[int, int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    running = dict(fds)
    while running and time.monotonic() < deadline:
        ready, _, _ = select.select(list(running.values()), [], [], deadline - time.monotonic())
        running = {pid: fd for pid, fd in running.items() if fd not in ready}
    for fd in fds.values():
        os.close(fd)
    return sorted(running)


def _read_lines(stream: IO[str], into: queue.Queue[str]) -> None:
    for line in stream:
        into.put(line)


@pytest.mark.kafka
@pytest.mark.timeout(600)
def test_the_demo_scenario_passes_every_check_across_all_services(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TMPDIR": str(tmp_path)}
    result = subprocess.run(
        DEMO,
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
    # The demo's data and logs go with it when it succeeds.
    assert list(tmp_path.iterdir()) == []


@pytest.mark.kafka
@pytest.mark.timeout(300)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_mid_demo_stops_every_process_exits_143_and_removes_the_demo_directory(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "TMPDIR": str(tmp_path)}
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    with subprocess.Popen(
        DEMO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as demo:
        assert demo.stdout is not None
        reader = threading.Thread(target=_read_lines, args=(demo.stdout, lines), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 180
            while not any(line.startswith("Scenario:") for line in seen):
                seen.append(lines.get(timeout=max(0.1, deadline - time.monotonic())))
            processes = _pidfds(_descendants(demo.pid))
            # streams, identity, orders, billing, gunicorn's master and its two workers at least
            assert len(processes) >= 7, seen
            demo.send_signal(signal.SIGTERM)
            code = demo.wait(timeout=60)
            reader.join(timeout=10)
            while not lines.empty():
                seen.append(lines.get())
            assert code == 143, "".join(seen)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
            reader.join(timeout=10)
    assert _still_running(processes, timeout=15) == []
    assert list(tmp_path.iterdir()) == []
