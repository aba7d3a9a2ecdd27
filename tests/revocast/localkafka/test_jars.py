"""Jar resolution and its cache, with a fake ``mvn`` so no network is needed."""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from revocast.localkafka import MavenError, resolve_jars
from tests._kafka_fixtures import wait_until

# Records each call, then behaves like copy-dependencies: one jar in the output dir. With a
# gate (a FIFO) it first blocks until the test opens the gate, so concurrent resolvers overlap.
_FAKE_MVN = """\
#!{python}
import pathlib, sys
pathlib.Path({calls!r}).open("a").write(" ".join(sys.argv[1:]) + "\\n")
if {fail!r}:
    print("BUILD FAILURE: could not resolve kafka_2.13")
    sys.exit(1)
if {gate!r}:
    open({gate!r}).read()
out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-DoutputDirectory="))
pathlib.Path(out).mkdir(parents=True)
pathlib.Path(out, "kafka_2.13-fake.jar").write_bytes(b"PK")
"""


def _install_fake_mvn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False, gate: str = ""
) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls.txt"
    calls.touch()
    mvn = bin_dir / "mvn"
    mvn.write_text(_FAKE_MVN.format(python=sys.executable, calls=str(calls), fail=fail, gate=gate))
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return calls


def test_second_resolve_uses_the_completed_cache_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch)

    first = resolve_jars(root=tmp_path / "cache")
    second = resolve_jars(root=tmp_path / "cache")

    assert first == second
    assert [p.name for p in first.iterdir()] == ["kafka_2.13-fake.jar"]
    assert len(calls.read_text().splitlines()) == 1
    command = calls.read_text()
    assert "dependency:copy-dependencies" in command
    assert f"-Dmaven.repo.local={tmp_path / 'cache'}" in command


def test_concurrent_resolvers_run_maven_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    calls = _install_fake_mvn(tmp_path, monkeypatch, gate=str(gate))
    waiting: set[int] = set()
    real_flock = fcntl.flock

    def flock(fd: int, operation: int) -> None:
        try:
            real_flock(fd, operation)
        except BlockingIOError:
            waiting.add(threading.get_ident())
            raise

    monkeypatch.setattr(fcntl, "flock", flock)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(resolve_jars, root=tmp_path / "cache") for _ in range(4)]
        # Maven is running (blocked on the gate) while the three others wait for the lock.
        wait_until(lambda: len(waiting) == 3, timeout=30, message="resolvers waiting for the lock")
        with gate.open("w"):
            pass
        libs = [f.result(timeout=60) for f in futures]

    assert len(set(libs)) == 1
    assert len(calls.read_text().splitlines()) == 1


def test_missing_maven_error_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(MavenError, match=r"Install Maven 3\.6\+ and a Java 17"):
        resolve_jars(root=tmp_path / "cache")


def test_failed_maven_run_reports_its_output_and_leaves_no_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _install_fake_mvn(tmp_path, monkeypatch, fail=True)

    with pytest.raises(MavenError, match=r"could not resolve kafka_2\.13"):
        resolve_jars(root=tmp_path / "cache")

    (home,) = (tmp_path / "cache").glob("kafka-*[0-9]")
    assert sorted(p.name for p in home.iterdir()) == ["pom.xml"]
