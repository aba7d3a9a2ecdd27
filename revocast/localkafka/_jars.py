"""Resolve the broker's jars from Maven Central once, into a per-user cache.

Layout under :func:`cache_dir`::

    kafka-<version>/pom.xml      copy of the packaged pom that was resolved
    kafka-<version>/lib/*.jar    the runtime classpath
    kafka-<version>/m2/          Maven's local repository (``-Dmaven.repo.local``)
    kafka-<version>/.complete    marker: sha256 of the pom that filled ``lib``
    kafka-<version>/lib.sha1     ``sha1sum`` manifest of ``lib``, from Maven Central's checksums
    kafka-<version>.lock         fcntl lock held while resolving

Every call checks ``lib`` against its manifest (about 35 ms for the 46 jars), so a
truncated or overwritten jar is re-fetched once instead of failing every broker start.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import re
import shutil
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

__all__ = ["LocalKafkaError", "MavenError", "cache_dir", "kafka_version", "resolve_jars"]

_log = logging.getLogger(__name__)

_MARKER = ".complete"
_MANIFEST = "lib.sha1"
_MAVEN_TIMEOUT_S = 900.0
_LOCK_TIMEOUT_S = 1200.0


class LocalKafkaError(Exception):
    """Base class of every error raised by :mod:`revocast.localkafka`."""


class MavenError(LocalKafkaError):
    """The broker's jars could not be resolved: Maven is missing or failed."""


def cache_dir() -> Path:
    """Return the per-user cache root.

    ``$REVOCAST_CACHE_DIR`` if set, else ``${XDG_CACHE_HOME:-~/.cache}/revocast``.
    """
    explicit = os.environ.get("REVOCAST_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "revocast"


def _pom_bytes() -> bytes:
    return resources.files(__package__).joinpath("pom.xml").read_bytes()


def kafka_version() -> str:
    """Return the Kafka version pinned in the packaged ``pom.xml``."""
    match = re.search(rb"<kafka\.version>([^<]+)</kafka\.version>", _pom_bytes())
    if match is None:  # pragma: no cover - the packaged pom always pins it
        raise MavenError("packaged pom.xml does not pin <kafka.version>")
    return match.group(1).decode()


def resolve_jars(*, root: Path | None = None) -> Path:
    """Return a directory holding the broker's runtime jars, resolving them if needed.

    The first call runs ``mvn dependency:copy-dependencies`` (about 45 MB from Maven
    Central); later calls check the jars against the recorded checksums and run no
    Maven at all. A corrupt or missing jar is re-fetched once. Concurrent callers,
    threads or processes, serialise on a file lock, so only one resolves.

    Raises:
        MavenError: ``mvn`` is not on ``PATH``, the resolution failed, or a jar is
            still corrupt after re-fetching it.
    """
    pom = _pom_bytes()
    digest = hashlib.sha256(pom).hexdigest()
    home = (root if root is not None else cache_dir()) / f"kafka-{kafka_version()}"
    lib = home / "lib"
    if _is_complete(home, digest) and _is_intact(home):
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home.with_name(home.name + ".lock")):
        # Another process may have finished (or repaired) while we waited for the lock.
        if _is_complete(home, digest) and _is_intact(home):
            return lib
        has_jars = lib.is_dir() and any(lib.glob("*.jar"))
        if _is_complete(home, digest) and has_jars and not _bad_jars(lib, home / "m2"):
            _write_manifest(home)  # a cache filled before manifests existed
            return lib
        _fill(home, pom, lib)
        (home / _MARKER).write_text(digest + "\n")
    return lib


def _is_complete(home: Path, digest: str) -> bool:
    try:
        return (home / _MARKER).read_text().strip() == digest
    except FileNotFoundError:
        return False


def _fill(home: Path, pom: bytes, lib: Path) -> None:
    """Run Maven and check every jar against Maven Central's checksum; retry once."""
    if lib.is_dir() and (bad := _bad_jars(lib, home / "m2")):
        _log.warning("corrupt jars in the Kafka cache, re-fetching: %s", ", ".join(bad))
    (home / _MANIFEST).unlink(missing_ok=True)
    for attempt in (1, 2):
        _run_maven(home, pom, lib)
        bad = _bad_jars(lib, home / "m2")
        if not bad:
            _write_manifest(home)
            return
        if attempt == 1:
            # Maven trusts its local repository: drop the bad downloads it would copy again.
            _drop_corrupt_downloads(home / "m2", bad)
    raise MavenError(
        f"jar {lib / bad[0]} is corrupt even after re-fetching it (it does not match "
        f"Maven Central's checksum); delete {home} to clear the cache and retry"
    )


def _is_intact(home: Path) -> bool:
    """Whether ``lib`` holds exactly the jars of the manifest, each with its checksum."""
    try:
        lines = (home / _MANIFEST).read_text().splitlines()
    except FileNotFoundError:
        return False
    expected: dict[str, str] = {}
    for line in lines:
        sha1, _, name = line.partition("  ")
        expected[name] = sha1
    lib = home / "lib"
    try:
        present = {jar.name for jar in lib.glob("*.jar")}
        return present == expected.keys() and all(
            _sha1(lib / name) == sha1 for name, sha1 in expected.items()
        )
    except OSError:
        return False


def _bad_jars(lib: Path, m2: Path) -> list[str]:
    """Names of the jars in *lib* that differ from the checksum Maven downloaded with them.

    A jar without a published ``.sha1`` must at least open as a zip archive.
    """
    published = {path.name: path for path in m2.rglob("*.jar")}
    bad = []
    for jar in sorted(lib.glob("*.jar")):
        checksum = _published_sha1(published.get(jar.name))
        ok = _sha1(jar) == checksum if checksum is not None else _opens_as_zip(jar)
        if not ok:
            bad.append(jar.name)
    return bad


def _drop_corrupt_downloads(m2: Path, names: list[str]) -> None:
    for path in m2.rglob("*.jar"):
        if path.name in names:
            checksum = _published_sha1(path)
            if checksum is None or _sha1(path) != checksum:
                path.unlink()


def _write_manifest(home: Path) -> None:
    jars = sorted((home / "lib").glob("*.jar"))
    scratch = home / f"{_MANIFEST}.partial-{os.getpid()}"
    scratch.write_text("".join(f"{_sha1(jar)}  {jar.name}\n" for jar in jars))
    scratch.replace(home / _MANIFEST)


def _published_sha1(jar: Path | None) -> str | None:
    if jar is None:
        return None
    try:
        words = jar.with_name(jar.name + ".sha1").read_text().split()
    except FileNotFoundError:
        return None
    return words[0].lower() if words else None


def _sha1(path: Path) -> str:
    return hashlib.sha1(path.read_bytes(), usedforsecurity=False).hexdigest()


def _opens_as_zip(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError):
        return False


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on *path*; wait (bounded) while another resolver runs."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise MavenError(f"timed out waiting for the lock {path}") from None
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _run_maven(home: Path, pom: bytes, lib: Path) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise MavenError(
            "Maven ('mvn') is not on PATH; it is needed once to download the local Kafka "
            "broker's jars. Install Maven 3.6+ and a Java 17 JDK "
            "(e.g. 'apt-get install maven openjdk-17-jre-headless'), "
            "or point KAFKA_BOOTSTRAP_SERVERS at an existing broker."
        )
    (home / "pom.xml").write_bytes(pom)
    # Copy into a scratch directory and rename, so an interrupted run never
    # leaves a half-filled lib/ behind a marker.
    scratch = home / f"lib.partial-{os.getpid()}"
    shutil.rmtree(scratch, ignore_errors=True)
    command = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(home / "pom.xml"),
        "dependency:copy-dependencies",
        "-DincludeScope=runtime",
        f"-DoutputDirectory={scratch}",
        f"-Dmaven.repo.local={home / 'm2'}",
    ]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=_MAVEN_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise MavenError(
            f"'mvn dependency:copy-dependencies' timed out after {exc.timeout}s"
        ) from exc
    if result.returncode != 0 or not any(scratch.glob("*.jar")):
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
        shutil.rmtree(scratch, ignore_errors=True)
        raise MavenError(
            f"'mvn dependency:copy-dependencies' failed (exit {result.returncode}); "
            f"check network access to Maven Central. Output:\n{tail}"
        )
    shutil.rmtree(lib, ignore_errors=True)
    scratch.rename(lib)
