"""``revocast kafka up|status|down`` run as real subprocesses, as a user would."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from revocast.cli import main
from tests._kafka_fixtures import create_topic, pid_alive, produce, read_values

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.kafka


def revocast(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "revocast.cli", *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def test_up_status_down_round_trip_leaves_no_process_or_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 'up' and 'down' run as real processes: the broker must outlive the one that started
    # it and be stopped by another. The other commands only read the state file and /proc,
    # so they run here, sparing a ~0.6 s import each.
    state_file = tmp_path / "kafka.json"
    flag = ("--state-file", str(state_file))
    assert main(["kafka", "status", *flag]) == 1

    up = revocast("kafka", "up", *flag)
    try:
        assert up.returncode == 0, up.stderr
        assert up.stdout.startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        bootstrap = up.stdout.strip().partition("=")[2]
        state = json.loads(state_file.read_text())
        pid, data_dir = state["pid"], Path(state["data_dir"])
        assert pid_alive(pid), "the broker must outlive the 'up' command"

        topic = create_topic(bootstrap, partitions=1)
        produce(bootstrap, topic, b"via-cli-broker")
        assert read_values(bootstrap, topic, 1) == [b"via-cli-broker"]

        capsys.readouterr()
        assert main(["kafka", "up", *flag]) == 0
        again = capsys.readouterr()
        assert again.out.strip() == f"KAFKA_BOOTSTRAP_SERVERS={bootstrap}"
        assert "already running" in again.err

        assert main(["kafka", "status", *flag]) == 0
        status = capsys.readouterr().out
        assert "running" in status
        assert bootstrap in status
    finally:
        down = revocast("kafka", "down", *flag)

    assert down.returncode == 0, down.stderr
    assert not pid_alive(pid)
    assert not data_dir.exists()
    assert not state_file.exists()
    assert main(["kafka", "status", *flag]) == 1
    assert "not running" in capsys.readouterr().out


def processes_mentioning(text: Path) -> list[int]:
    """Live processes whose command line contains *text* (the JVM names its data dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if proc.name.isdigit() and str(text).encode() in cmdline and pid_alive(int(proc.name)):
            found.append(int(proc.name))
    return found


def test_two_concurrent_ups_start_one_broker_and_down_leaves_no_jvm(tmp_path: Path) -> None:
    flag = ("--state-file", str(tmp_path / "kafka.json"))
    data_root = tmp_path / "tmp"  # every broker data dir lands here, so no JVM goes unseen
    data_root.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TMPDIR": str(data_root)}
    command = [sys.executable, "-m", "revocast.cli", "kafka", "up", *flag]
    ups = [
        subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        results = [up.communicate(timeout=180) for up in ups]

        assert [up.returncode for up in ups] == [0, 0], results
        bootstraps = {stdout.strip() for stdout, _ in results}
        assert len(bootstraps) == 1, f"two brokers started: {bootstraps}"
        assert bootstraps.pop().startswith("KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:")
        assert sum("already running" in stderr for _, stderr in results) == 1
        assert len(processes_mentioning(data_root)) == 1
    finally:
        down = revocast("kafka", "down", *flag)
        leftover = processes_mentioning(data_root)
        for pid in leftover:  # an orphan must not outlive the test, even when it fails
            os.kill(pid, signal.SIGKILL)

    assert down.returncode == 0, down.stderr
    assert leftover == []


def test_down_without_a_broker_is_a_no_op(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["kafka", "down", "--state-file", str(tmp_path / "none.json")])

    assert code == 0
    assert "not running" in capsys.readouterr().out


def test_unreadable_state_file_is_a_one_line_error(tmp_path: Path) -> None:
    # A real process, as the user sees it: no traceback, no log line, just the error.
    state_file = tmp_path / "kafka.json"
    state_file.write_text("{not json")

    status = revocast("kafka", "status", "--state-file", str(state_file))

    assert status.returncode == 2
    assert status.stderr.startswith("revocast: error: cannot read state file")
    assert len(status.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"pid": "not-a-pid", "bootstrap_servers": "127.0.0.1:9092", "data_dir": "/tmp/x"}',
        '{"pid": 1, "bootstrap_servers": "127.0.0.1:9092", "data_dir": null}',
    ],
)
def test_malformed_state_file_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    # In this process: each 'python -m revocast.cli' spends ~0.6 s importing every command.
    state_file = tmp_path / "kafka.json"
    state_file.write_text(content)

    for action in ("status", "up", "down"):
        code = main(["kafka", action, "--state-file", str(state_file)])
        stderr = capsys.readouterr().err

        assert code == 2, (action, stderr)
        assert stderr.startswith("revocast: error: state file"), (action, stderr)
        assert len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("data_dir", ["", "/", str(Path(sys.executable).parent)])
def test_state_file_naming_no_broker_directory_never_gets_a_process_signalled(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data_dir: str
) -> None:
    # 'down' SIGTERMs, then SIGKILLs, the recorded pid when its command line contains the
    # recorded data directory: "", "/" or the interpreter's directory is on this one's.
    bystander = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        state_file = tmp_path / "kafka.json"
        state = {"pid": bystander.pid, "bootstrap_servers": "127.0.0.1:9092", "data_dir": data_dir}
        state_file.write_text(json.dumps(state))
        for action in ("down", "status"):
            code = main(["kafka", action, "--state-file", str(state_file)])
            stderr = capsys.readouterr().err

            assert code == 2, (action, stderr)
            assert stderr.startswith("revocast: error: state file"), (action, stderr)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
