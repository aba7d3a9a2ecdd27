"""scripts/_env.sh, scripts/demo and scripts/test on a copy of the scripts, with a fake Python.

The copy lives under a path with a space and runs from another directory; the fake interpreter
logs what it is asked to do, so a test sees whether a venv was made or a package installed
without touching the network or the project's own .venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parents[3] / "scripts"

FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1" in
  -c) exit "${FAKE_TOO_OLD:-0}" ;;
  -V) echo "Python 3.9.2" ;;
  -m)
    if [[ "$2" == venv ]]; then
      dir="${*: -1}"
      [[ "$3" != --clear ]] || rm -rf "$dir"
      mkdir -p "$dir/bin"; cp "$0" "$dir/bin/python"
    elif [[ "$2" == pip && " $* " == *" -e "* ]]; then
      [[ -z "${FAKE_PIP_FAIL:-}" ]] || { echo "ERROR: no network" >&2; exit 1; }
      if [[ -n "${FAKE_PIP_GATE:-}" ]]; then
        touch "$FAKE_PIP_GATE.started.$$"
        while [[ ! -e "$FAKE_PIP_GATE.go" ]]; do sleep 0.05; done
      fi
      bin="$(dirname "$0")"
      printf '#!/usr/bin/env bash\necho "$PWD|$*" >> "$FAKE_LOG"\nexit "${FAKE_RC:-0}"\n' \
        > "$bin/revocast"
      for tool in pytest ruff mypy; do cp "$bin/revocast" "$bin/$tool"; done
      chmod +x "$bin"/*
    fi ;;
esac
"""


@dataclass
class Clone:
    root: Path
    log: Path
    env: dict[str, str]

    def run(self, script: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        elsewhere = self.root.parent / "elsewhere"
        elsewhere.mkdir(exist_ok=True)
        return subprocess.run(
            ["bash", "-c", script, "_", str(self.root), *args],
            cwd=elsewhere,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            stdin=subprocess.DEVNULL,
        )

    def start_ensure_venv(self, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["bash", "-c", 'source "$1/scripts/_env.sh"; ensure_venv', "_", str(self.root)],
            cwd=self.root.parent,
            env={**self.env, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def ensure_venv(self, **env: str) -> subprocess.CompletedProcess[str]:
        return self.run('source "$1/scripts/_env.sh"; ensure_venv', **env)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def installs(self) -> int:
        return sum(" -e " in f" {call} " for call in self.calls())


@pytest.fixture
def clone(tmp_path: Path) -> Clone:
    root = tmp_path / "a clone"
    shutil.copytree(SCRIPTS, root / "scripts")
    (root / "pyproject.toml").write_text('[project]\nname = "x"\n')
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    log = tmp_path / "calls.log"
    env = {
        "PATH": os.environ["PATH"],
        "PYTHON": str(python),
        "FAKE_LOG": str(log),
        "HOME": str(tmp_path),
    }
    return Clone(root, log, env)


def fake_tools(directory: Path, **scripts: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = directory / name
        path.write_text(f"#!/usr/bin/env bash\n{body}\n")
        path.chmod(0o755)
    return directory


def test_a_fresh_clone_gets_a_venv_and_an_install_once_then_reuses_them(clone: Clone) -> None:
    first = clone.ensure_venv()
    assert first.returncode == 0, first.stderr
    assert (clone.root / ".venv" / "bin" / "python").exists()
    second = clone.ensure_venv()
    assert second.returncode == 0, second.stderr
    assert clone.installs() == 1
    assert "installing" not in second.stderr


def test_a_pyproject_change_since_the_install_reinstalls(clone: Clone) -> None:
    assert clone.ensure_venv().returncode == 0
    with (clone.root / "pyproject.toml").open("a") as f:
        f.write('dependencies = ["httpx"]\n')
    assert clone.ensure_venv().returncode == 0
    assert clone.installs() == 2


def test_a_venv_whose_python_no_longer_runs_is_rebuilt_and_reinstalled(clone: Clone) -> None:
    assert clone.ensure_venv().returncode == 0
    # The interpreter the venv linked to was upgraded away: its python fails to start.
    (clone.root / ".venv" / "bin" / "python").write_text("#!/bin/sh\nexit 127\n")
    result = clone.ensure_venv()
    assert result.returncode == 0, result.stderr
    assert "rebuilding" in result.stderr
    assert any(call.startswith("-m venv --clear") for call in clone.calls())
    assert clone.installs() == 2


def test_a_stamp_without_the_installed_entry_points_reinstalls(clone: Clone) -> None:
    assert clone.ensure_venv().returncode == 0
    (clone.root / ".venv" / "bin" / "revocast").unlink()
    assert clone.ensure_venv().returncode == 0
    assert clone.installs() == 2


def test_a_failed_install_says_so_exits_non_zero_and_is_retried_next_run(clone: Clone) -> None:
    failed = clone.ensure_venv(FAKE_PIP_FAIL="1")
    assert failed.returncode == 1
    assert "installing into" in failed.stderr
    assert "failed" in failed.stderr
    assert "no network?" in failed.stderr
    assert not (clone.root / ".venv" / ".revocast-installed").exists()
    assert clone.ensure_venv().returncode == 0
    assert clone.installs() == 2


def test_python_older_than_3_11_stops_with_the_version_found_and_builds_nothing(
    clone: Clone,
) -> None:
    result = clone.ensure_venv(FAKE_TOO_OLD="1")
    assert result.returncode == 1
    assert "Python 3.11+ is required" in result.stderr
    assert "Python 3.9.2" in result.stderr
    assert not (clone.root / ".venv").exists()


def test_a_missing_python_is_named(clone: Clone) -> None:
    result = clone.ensure_venv(PYTHON="/nowhere/python3.11")
    assert result.returncode == 1
    assert "'/nowhere/python3.11' not found" in result.stderr


def test_scripts_demo_runs_from_any_directory_and_returns_the_demo_exit_code(
    clone: Clone,
) -> None:
    result = clone.run(
        '"$1/scripts/demo" --scenario-only',
        KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",
        FAKE_RC="3",
    )
    assert result.returncode == 3, result.stderr
    assert f"{clone.root}|demo --scenario-only" in clone.calls()


JAVA_11 = "echo 'openjdk version \"11.0.2\" 2019-01-15' >&2"
JAVA_17 = "echo 'openjdk version \"17.0.15\" 2025-04-15' >&2"
JAVA_8 = "echo 'java version \"1.8.0_292\"' >&2"


@pytest.mark.parametrize("java", [JAVA_11, JAVA_8], ids=["java-11", "java-8"])
def test_a_java_older_than_17_is_refused_before_the_broker_fails_on_it(
    clone: Clone, tmp_path: Path, java: str
) -> None:
    tools = fake_tools(tmp_path / "tools", java=java, mvn="exit 0")
    result = clone.run(
        'source "$1/scripts/_env.sh"; need_java',
        PATH=f"{tools}:{os.environ['PATH']}",
        KAFKA_BOOTSTRAP_SERVERS="",
    )
    assert result.returncode == 1
    assert "needs Java 17+" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def test_java_home_is_the_java_checked_as_it_is_the_one_the_broker_runs(
    clone: Clone, tmp_path: Path
) -> None:
    tools = fake_tools(tmp_path / "tools", java=JAVA_17, mvn="exit 0")
    old = fake_tools(tmp_path / "old jdk" / "bin", java=JAVA_11)
    result = clone.run(
        'source "$1/scripts/_env.sh"; need_java always',
        PATH=f"{tools}:{os.environ['PATH']}",
        JAVA_HOME=str(old.parent),
    )
    assert result.returncode == 1
    assert f"{old}/java is openjdk version" in result.stderr
    ok = clone.run(
        'source "$1/scripts/_env.sh"; need_java always', PATH=f"{tools}:{os.environ['PATH']}"
    )
    assert ok.returncode == 0, ok.stderr


def test_no_java_and_no_apt_get_names_what_is_missing_and_the_alternative(
    clone: Clone, tmp_path: Path
) -> None:
    # Only the tools the script itself uses: no java, mvn or apt-get.
    tools = tmp_path / "only"
    tools.mkdir()
    for tool in ("bash", "id", "dirname", "sed", "head", "cat", "cut", "env"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    result = clone.run('source "$1/scripts/_env.sh"; need_java', PATH=str(tools))
    assert result.returncode == 1
    assert "needs Java 17+ and Maven on PATH" in result.stderr
    assert "KAFKA_BOOTSTRAP_SERVERS" in result.stderr


def _root_without_network(tmp_path: Path) -> Path:
    """A PATH with what the script uses, `id` saying root and an apt-get that cannot reach
    its sources; no java, mvn or redis-server."""
    tools = fake_tools(tmp_path / "offline", id="echo 0", **{"apt-get": "exit 100"})
    for tool in ("bash", "dirname", "sed", "head", "cat", "cut", "env"):
        found = shutil.which(tool)
        assert found is not None
        (tools / tool).symlink_to(found)
    return tools


def test_a_redis_that_cannot_be_installed_only_warns_as_the_benchmarks_can_do_without(
    clone: Clone, tmp_path: Path
) -> None:
    tools = _root_without_network(tmp_path)
    result = clone.run('source "$1/scripts/_env.sh"; need_redis; echo carried on', PATH=str(tools))
    assert result.returncode == 0, result.stderr
    assert "carried on" in result.stdout
    assert "apt-get could not install redis-server" in result.stderr


def test_a_java_that_cannot_be_installed_says_apt_failed_and_what_is_needed(
    clone: Clone, tmp_path: Path
) -> None:
    tools = _root_without_network(tmp_path)
    result = clone.run('source "$1/scripts/_env.sh"; need_java always', PATH=str(tools))
    assert result.returncode == 1
    assert "apt-get could not install openjdk-17-jre-headless maven" in result.stderr
    assert "needs Java 17+ and Maven on PATH" in result.stderr


def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    tick = threading.Event()
    while not condition():
        if time.monotonic() >= deadline:
            return False
        tick.wait(0.02)
    return True


@pytest.mark.skipif(shutil.which("flock") is None, reason="util-linux flock")
def test_two_scripts_started_together_on_a_fresh_clone_install_once(
    clone: Clone, tmp_path: Path
) -> None:
    gate = tmp_path / "pip"

    def started() -> list[Path]:
        return list(tmp_path.glob("pip.started.*"))

    first = clone.start_ensure_venv(FAKE_PIP_GATE=str(gate))
    second = None
    try:
        assert _wait_for(lambda: len(started()) == 1, timeout=30)
        second = clone.start_ensure_venv(FAKE_PIP_GATE=str(gate))
        # Unlocked, the second reaches pip while the first is still installing.
        _wait_for(lambda: len(started()) > 1, timeout=2)
        Path(f"{gate}.go").touch()
        assert first.wait(timeout=30) == 0
        assert second.wait(timeout=30) == 0
    finally:
        Path(f"{gate}.go").touch()
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert clone.installs() == 1
