"""Jar resolution and its cache, with a fake ``mvn`` so no network is needed."""

from __future__ import annotations

import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from revocast.localkafka import MavenError, resolve_jars

# Records each call, then behaves like copy-dependencies: one jar in the output dir.
# The pause makes concurrent resolvers overlap.
_FAKE_MVN = """\
#!{python}
import pathlib, sys, time
pathlib.Path({calls!r}).open("a").write(" ".join(sys.argv[1:]) + "\\n")
if {fail!r}:
    print("BUILD FAILURE: could not resolve kafka_2.13")
    sys.exit(1)
time.sleep(0.3)
out = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("-DoutputDirectory="))
pathlib.Path(out).mkdir(parents=True)
pathlib.Path(out, "kafka_2.13-fake.jar").write_bytes(b"PK")
"""


def _install_fake_mvn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, fail: bool = False
) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls.txt"
    calls.touch()
    mvn = bin_dir / "mvn"
    mvn.write_text(_FAKE_MVN.format(python=sys.executable, calls=str(calls), fail=fail))
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
    calls = _install_fake_mvn(tmp_path, monkeypatch)

    with ThreadPoolExecutor(max_workers=4) as pool:
        libs = list(pool.map(lambda _: resolve_jars(root=tmp_path / "cache"), range(4)))

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
