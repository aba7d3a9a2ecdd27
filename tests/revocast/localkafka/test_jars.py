"""Jar resolution and its cache, with a fake ``mvn`` so no network is needed."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import stat
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from revocast.localkafka import MavenError, resolve_jars
from tests._kafka_fixtures import wait_until

# Records each call, then behaves like copy-dependencies: "downloads" one jar and its .sha1
# into the local repository unless already there (the first ``bad_downloads`` downloads are
# garbage), then copies it to the output dir. With a gate (a FIFO) it first blocks until the
# test opens the gate, so concurrent resolvers overlap.
_FAKE_MVN = """\
#!{python}
import hashlib, io, pathlib, sys, zipfile
calls = pathlib.Path({calls!r})
calls.open("a").write(" ".join(sys.argv[1:]) + "\\n")
if {fail!r}:
    print("BUILD FAILURE: could not resolve kafka_2.13")
    sys.exit(1)
if {gate!r}:
    open({gate!r}).read()
def arg(name):
    return next(a.split("=", 1)[1] for a in sys.argv if a.startswith(name + "="))
good = io.BytesIO()
with zipfile.ZipFile(good, "w") as jar:
    jar.writestr("kafka/Kafka.class", b"fake class")
good = good.getvalue()
artifact = pathlib.Path(arg("-Dmaven.repo.local"), "org/apache/kafka/kafka_2.13-fake.jar")
if not artifact.exists():
    downloads = pathlib.Path({calls!r} + ".downloads")
    count = len(downloads.read_text()) if downloads.exists() else 0
    downloads.write_text("x" * (count + 1))
    artifact.parent.mkdir(parents=True, exist_ok=True)
    artifact.write_bytes(b"<html>proxy error</html>" if count < {bad_downloads!r} else good)
    pathlib.Path(str(artifact) + ".sha1").write_text(hashlib.sha1(good).hexdigest() + "\\n")
out = pathlib.Path(arg("-DoutputDirectory"))
out.mkdir(parents=True)
(out / artifact.name).write_bytes(artifact.read_bytes())
"""


def _install_fake_mvn(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    fail: bool = False,
    gate: str = "",
    bad_downloads: int = 0,
) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "mvn-calls.txt"
    calls.touch()
    mvn = bin_dir / "mvn"
    mvn.write_text(
        _FAKE_MVN.format(
            python=sys.executable,
            calls=str(calls),
            fail=fail,
            gate=gate,
            bad_downloads=bad_downloads,
        )
    )
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


def test_truncated_cached_jar_is_copied_again_from_the_local_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch)
    lib = resolve_jars(root=tmp_path / "cache")
    jar = lib / "kafka_2.13-fake.jar"
    jar.write_bytes(jar.read_bytes()[:10])  # as a full disk or a killed copy leaves it

    assert resolve_jars(root=tmp_path / "cache") == lib

    assert zipfile.ZipFile(jar).testzip() is None
    assert len(calls.read_text().splitlines()) == 2
    assert len((tmp_path / "mvn-calls.txt.downloads").read_text()) == 1  # no new download
    resolve_jars(root=tmp_path / "cache")
    assert len(calls.read_text().splitlines()) == 2  # repaired for good


def test_lib_deleted_by_hand_is_filled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch)
    lib = resolve_jars(root=tmp_path / "cache")
    shutil.rmtree(lib)

    assert resolve_jars(root=tmp_path / "cache") == lib

    assert [p.name for p in lib.iterdir()] == ["kafka_2.13-fake.jar"]
    assert len(calls.read_text().splitlines()) == 2


def test_corrupt_download_is_deleted_from_the_local_repository_and_fetched_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch, bad_downloads=1)

    lib = resolve_jars(root=tmp_path / "cache")

    assert zipfile.ZipFile(lib / "kafka_2.13-fake.jar").testzip() is None
    assert len(calls.read_text().splitlines()) == 2


def test_jar_still_corrupt_after_refetch_is_a_one_line_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch, bad_downloads=2)

    with pytest.raises(MavenError) as raised:
        resolve_jars(root=tmp_path / "cache")

    message = str(raised.value)
    assert "\n" not in message
    assert "lib/kafka_2.13-fake.jar is corrupt even after re-fetching it" in message
    assert f"delete {tmp_path / 'cache'}/kafka-" in message
    assert len(calls.read_text().splitlines()) == 2
    assert not list((tmp_path / "cache").glob("kafka-*/.complete"))


def test_cache_filled_before_checksum_manifests_is_adopted_without_maven(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _install_fake_mvn(tmp_path, monkeypatch)
    lib = resolve_jars(root=tmp_path / "cache")
    manifest = lib.with_name("lib.sha1")
    recorded = manifest.read_text()
    manifest.unlink()

    resolve_jars(root=tmp_path / "cache")

    assert manifest.read_text() == recorded
    assert len(calls.read_text().splitlines()) == 1


@pytest.mark.kafka
def test_truncated_jar_in_a_copy_of_the_real_cache_is_restored_by_real_maven(
    tmp_path: Path,
) -> None:
    # The shared cache other tests run from stays untouched: corrupt a private copy.
    home = resolve_jars().parent
    copy = tmp_path / "cache" / home.name
    shutil.copytree(home, copy)
    jar = copy / "lib" / f"kafka_2.13-{home.name.removeprefix('kafka-')}.jar"
    published = next((copy / "m2").rglob(jar.name + ".sha1")).read_text().split()[0]
    with jar.open("r+b") as handle:
        handle.truncate(100_000)  # before the fix: StorageTool's main class "not found"

    assert resolve_jars(root=tmp_path / "cache") == copy / "lib"

    assert hashlib.sha1(jar.read_bytes(), usedforsecurity=False).hexdigest() == published
