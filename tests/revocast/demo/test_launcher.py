"""ProcessGroup: a child that fails to start is named with its log tail; stop() leaves none."""

from __future__ import annotations

import os
import select
import sys
import time
from pathlib import Path

import pytest

from revocast.demo._launcher import LaunchError, ProcessGroup, free_port
from revocast.demo._stack import ServiceSpec


def _spec(name: str, code: str, port: int | None = None) -> ServiceSpec:
    return ServiceSpec(name=name, argv=("-c", code), port=port, env={})


def test_a_child_that_exits_at_start_is_named_with_its_exit_code_and_log_tail(
    tmp_path: Path,
) -> None:
    crash = "import sys; print('cannot bind: address in use'); sys.exit(3)"
    with (
        ProcessGroup(tmp_path) as group,
        pytest.raises(LaunchError, match=r"(?s)orders exited with 3:.*address in use"),
    ):
        group.start(_spec("orders", crash, port=free_port()), sys.executable, timeout=30)


def test_a_child_that_never_answers_its_health_check_is_named_with_the_url(
    tmp_path: Path,
) -> None:
    port = free_port()
    silent = "import threading; print('started'); threading.Event().wait()"
    with (
        ProcessGroup(tmp_path) as group,
        pytest.raises(LaunchError, match=rf"(?s)billing did not answer .*:{port}/healthz.*started"),
    ):
        group.start(_spec("billing", silent, port=port), sys.executable, timeout=1)


@pytest.mark.skipif(not hasattr(os, "pidfd_open"), reason="Linux pidfd")
def test_stop_ends_each_child_and_the_processes_it_forked(tmp_path: Path) -> None:
    # Like gunicorn's master and its workers: a child with a grandchild in its process group.
    forks = (
        "import os, subprocess, sys, threading\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import threading; "
        "threading.Event().wait()'])\n"
        "print(child.pid, flush=True)\n"
        "threading.Event().wait()\n"
    )
    group = ProcessGroup(tmp_path)
    group.start(_spec("inventory", forks), sys.executable)
    ((_, parent),) = group.pids()
    log = tmp_path / "inventory.log"
    deadline = time.monotonic() + 30
    while not log.read_text().strip():  # the child prints its child's pid at once
        assert time.monotonic() < deadline, "the child printed nothing"
    pending = [os.pidfd_open(parent), os.pidfd_open(int(log.read_text().split()[0]))]
    group.stop(timeout=10)
    deadline = time.monotonic() + 10
    try:
        while pending and time.monotonic() < deadline:
            ready, _, _ = select.select(pending, [], [], deadline - time.monotonic())
            for pidfd in ready:
                pending.remove(pidfd)
                os.close(pidfd)
        assert pending == [], "a process outlived stop()"
    finally:
        for pidfd in pending:
            os.close(pidfd)


def test_children_get_the_stacks_revocast_settings_not_the_callers_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A REVOCAST_* left in the operator's shell (fail-open, another topic, SASL for their
    # cluster) must not reach the demo's services: their settings are the stack's alone.
    monkeypatch.setenv("REVOCAST_FAILURE_POLICY", "accept")
    monkeypatch.setenv("REVOCAST_TOPIC", "their.topic")
    monkeypatch.setenv("NOT_REVOCAST_SETTING", "kept")  # not ours: inherited
    out = tmp_path / "env.txt"
    dump = (  # written whole, then renamed into place: never read half-written
        "import os, pathlib; out = os.environ['OUT']; pathlib.Path(out + '.tmp').write_text("
        "'\\n'.join(sorted(k + '=' + v for k, v in os.environ.items() "
        "if k.startswith(('REVOCAST_', 'NOT_REVOCAST_', 'OUT'))))); os.replace(out + '.tmp', out)"
    )
    spec = ServiceSpec(
        name="orders",
        argv=("-c", dump),
        port=None,
        env={"REVOCAST_TOPIC": "demo.topic", "OUT": str(out)},
    )
    with ProcessGroup(tmp_path / "logs") as group:
        group.start(spec, sys.executable)
        deadline = time.monotonic() + 30
        while not out.exists():
            assert time.monotonic() < deadline, "child never wrote its environment"
            select.select([], [], [], 0.05)
    assert out.read_text().splitlines() == [
        "NOT_REVOCAST_SETTING=kept",
        f"OUT={out}",
        "REVOCAST_TOPIC=demo.topic",
    ]
