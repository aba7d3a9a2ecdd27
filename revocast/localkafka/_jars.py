"""Resolve the broker's jars from Maven Central once, into a per-user cache.

Layout under :func:`cache_dir`::

    kafka-<version>/pom.xml      copy of the packaged pom that was resolved
    kafka-<version>/lib/*.jar    the runtime classpath
    kafka-<version>/m2/          Maven's local repository (``-Dmaven.repo.local``)
    kafka-<version>/.complete    marker: sha256 of the pom that filled ``lib``
    kafka-<version>.lock         fcntl lock held while resolving
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

__all__ = ["LocalKafkaError", "MavenError", "cache_dir", "kafka_version", "resolve_jars"]

_MARKER = ".complete"
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
    Central); later calls see the completed marker and run no Maven at all. Concurrent
    callers, threads or processes, serialise on a file lock, so only one resolves.

    Raises:
        MavenError: ``mvn`` is not on ``PATH`` or the resolution failed.
    """
    pom = _pom_bytes()
    digest = hashlib.sha256(pom).hexdigest()
    home = (root if root is not None else cache_dir()) / f"kafka-{kafka_version()}"
    lib = home / "lib"
    if _is_complete(home, digest):
        return lib
    home.mkdir(parents=True, exist_ok=True)
    with _locked(home.with_name(home.name + ".lock")):
        # Another process may have finished while we waited for the lock.
        if not _is_complete(home, digest):
            _run_maven(home, pom, lib)
            (home / _MARKER).write_text(digest + "\n")
    return lib


def _is_complete(home: Path, digest: str) -> bool:
    try:
        return (home / _MARKER).read_text().strip() == digest
    except FileNotFoundError:
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
