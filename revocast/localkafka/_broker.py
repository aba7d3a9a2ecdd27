"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) in a JVM."""

from __future__ import annotations

import base64
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from revocast.localkafka._jars import LocalKafkaError, resolve_jars

__all__ = ["BrokerStartError", "LocalKafkaBroker"]

_HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_PORT_ATTEMPTS = 3
_TAIL_LINES = 40
_FATAL_MARKER = "Exiting Kafka due to fatal exception"  # logged by kafka.Kafka$ at ERROR

# Defaults sized for one small machine and a single node. Every key can be
# overridden through ``extra_properties``.
_DEFAULT_PROPERTIES: dict[str, str] = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    # One replica exists, so every internal topic must accept replication factor 1.
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "1",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "1",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "share.coordinator.state.topic.num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    # Consumers in tests join immediately instead of waiting 3 s for peers.
    "group.initial.rebalance.delay.ms": "0",
    # A restarted broker can register only once the controller has expired its
    # previous session: 9 s by default, 3 s here. Heartbeats stay well inside it.
    "broker.heartbeat.interval.ms": "500",
    "broker.session.timeout.ms": "3000",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
    "num.recovery.threads.per.data.dir": "1",
    "log.cleaner.threads": "1",
    # The 128 MiB default would sit on a 384 MiB heap.
    "log.cleaner.dedupe.buffer.size": str(16 * 1024 * 1024),
    # Off, as in most production clusters: a misspelt topic name then fails
    # loudly, and tests create topics explicitly instead of racing auto-creation.
    "auto.create.topics.enable": "false",
}


class BrokerStartError(LocalKafkaError):
    """The broker did not become ready; ``log_tail`` holds the end of its logs."""

    def __init__(self, message: str, *, log_tail: str = "") -> None:
        super().__init__(f"{message}\n--- broker log tail ---\n{log_tail}" if log_tail else message)
        self.log_tail = log_tail


class _PortCollision(BrokerStartError):
    """Another process took one of our pre-picked ports before the JVM bound it."""


class LocalKafkaBroker:
    """A single-node Kafka broker run from Maven Central jars, listening on 127.0.0.1.

    Keyword-only configuration; ``None`` means "pick for me":

    * ``port`` / ``controller_port``: free non-zero ports are picked at start; if
      another process takes one first, the whole start is retried with new ports.
      Given ports are never changed.
    * ``data_dir``: the broker's work directory (``server.properties``, ``kraft/``
      data, ``broker.log``). By default a fresh unique temporary directory, deleted
      by :meth:`stop`; a directory you pass is never deleted.
    * ``heap``: the JVM's ``-Xmx``.
    * ``extra_properties``: ``server.properties`` entries that override the defaults.
    * ``detached``: run the JVM in its own session so it outlives this process (used
      by ``revocast kafka up``). Otherwise the JVM is killed when the thread that
      started it dies (Linux ``PR_SET_PDEATHSIG``), so a crashed test run leaves no
      stray JVM. Because the kernel ties this to the starting *thread*, start
      non-detached brokers from a thread that lives as long as the broker should.

    Not thread-safe: drive one instance from one thread.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        controller_port: int | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        heap: str = "384m",
        extra_properties: Mapping[str, str] | None = None,
        start_timeout: float = 120.0,
        detached: bool = False,
    ) -> None:
        self._fixed_ports = port is not None or controller_port is not None
        self._port = port
        self._controller_port = controller_port
        self._given_dir = Path(data_dir) if data_dir is not None else None
        self._work_dir: Path | None = self._given_dir
        self._heap = heap
        self._extra = dict(extra_properties or {})
        self._start_timeout = start_timeout
        self._detached = detached
        self._proc: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    # -- public contract -------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"`` of the client listener; valid once started."""
        if self._port is None:
            raise LocalKafkaError("broker has not been started")
        return f"{_HOST}:{self._port}"

    @property
    def port(self) -> int | None:
        """Client (PLAINTEXT) port; ``None`` until the first start picks one."""
        return self._port

    @property
    def controller_port(self) -> int | None:
        """KRaft controller port; ``None`` until the first start picks one."""
        return self._controller_port

    @property
    def data_dir(self) -> Path | None:
        """The work directory, or ``None`` when there is none (never started, or deleted)."""
        return self._work_dir

    @property
    def log_file(self) -> Path | None:
        """The broker's log4j log file."""
        return self._work_dir / "broker.log" if self._work_dir else None

    @property
    def pid(self) -> int | None:
        """PID of the broker JVM while it runs (or of the last one, until restarted)."""
        return self._proc.pid if self._proc else None

    def is_running(self) -> bool:
        """Whether the JVM process is alive (not whether it is ready)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Self:
        """Start the JVM and return once a metadata round trip succeeds.

        Resolves the jars on first use (see :func:`resolve_jars`) and formats the
        storage when the data directory holds none.

        Raises:
            BrokerStartError: the JVM exited or was not ready within ``start_timeout``.
            MavenError: the jars could not be resolved.
        """
        if self.is_running():
            raise BrokerStartError(f"broker already running (pid {self.pid})")
        java = _find_java()
        lib = resolve_jars()
        attempts = 1 if self._fixed_ports else _PORT_ATTEMPTS
        for attempt in range(1, attempts + 1):
            if self._work_dir is None:
                self._work_dir = Path(tempfile.mkdtemp(prefix="revocast-kafka-"))
            picked = iter(_free_ports(2))
            self._port = self._port or next(picked)
            self._controller_port = self._controller_port or next(picked)
            try:
                self._launch(java, lib)
            except _PortCollision:
                self._discard_run()
                if attempt == attempts:
                    raise
                continue
            except BaseException:
                # The error already carries the log tail; leave no JVM or temp dir.
                self._discard_run()
                raise
            return self
        raise AssertionError("unreachable")  # pragma: no cover

    def restart(self) -> Self:
        """Start again on the same ports and data after :meth:`kill` or ``stop(keep_data=True)``.

        A running broker is first stopped gracefully, keeping its data.
        """
        if self.is_running():
            self.stop(keep_data=True)
        if self._work_dir is None or not self._work_dir.exists() or self._port is None:
            raise BrokerStartError("nothing to restart: the broker has no data directory")
        self._launch(_find_java(), resolve_jars())
        return self

    def stop(self, *, keep_data: bool = False, timeout: float = 30.0) -> None:
        """Shut down with SIGTERM (controlled shutdown), SIGKILL after ``timeout`` seconds.

        Waits for the JVM to exit. Unless ``keep_data``, deletes the temporary data
        directory (a ``data_dir`` passed by the caller is kept). Idempotent.
        """
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._close_output()
        if not keep_data:
            self._discard_run()

    def kill(self) -> None:
        """SIGKILL the JVM, as a crash would; data is kept for :meth:`restart`."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_output()

    def __enter__(self) -> Self:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"<LocalKafkaBroker {_HOST}:{self._port} {state} pid={self.pid}>"

    # -- internals -------------------------------------------------------

    def _launch(self, java: str, lib: Path) -> None:
        work = self._work_dir
        assert work is not None
        work.mkdir(parents=True, exist_ok=True)
        props = work / "server.properties"
        props.write_text(self._server_properties(work))
        log4j = work / "log4j2.properties"
        log4j.write_bytes(resources.files(__package__).joinpath("log4j2.properties").read_bytes())
        jvm = [
            java,
            f"-Dlog4j2.configurationFile={log4j}",
            f"-Drevocast.kafka.log.file={work / 'broker.log'}",
            "-Djava.awt.headless=true",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # C1 only: starts ~2x faster on 2 cores
            "-cp",
            f"{lib}/*",
        ]
        if not (work / "kraft" / "meta.properties").exists():
            self._format(jvm, props, work)
        self._close_output()
        # Both logs append across runs in one data_dir: judge this run on its own lines.
        since = _log_sizes(work)
        self._out = (work / "broker.out").open("ab")
        self._proc = subprocess.Popen(
            [*jvm, f"-Xmx{self._heap}", "kafka.Kafka", str(props)],
            cwd=work,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=self._detached,
            preexec_fn=None if self._detached else _die_with_parent(),
        )
        self._wait_ready(self._proc, work, since)

    def _format(self, jvm: list[str], props: Path, work: Path) -> None:
        command = [*jvm, "-Xmx128m", "kafka.tools.StorageTool", "format"]
        command += ["-t", _cluster_id(), "-c", str(props)]
        try:
            result = subprocess.run(
                command,
                cwd=work,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self._start_timeout,
                check=False,
                preexec_fn=_die_with_parent(),
            )
        except subprocess.TimeoutExpired:  # run() has killed it
            raise BrokerStartError(
                f"kafka StorageTool format did not finish within {self._start_timeout:g}s"
            ) from None
        if result.returncode != 0:
            raise BrokerStartError(
                f"kafka StorageTool format failed (exit {result.returncode})",
                log_tail=_last_lines(result.stdout + result.stderr),
            )

    def _server_properties(self, work: Path) -> str:
        props = dict(_DEFAULT_PROPERTIES)
        props.update(
            {
                "controller.quorum.voters": f"1@{_HOST}:{self._controller_port}",
                "listeners": f"PLAINTEXT://{_HOST}:{self._port},"
                f"CONTROLLER://{_HOST}:{self._controller_port}",
                "advertised.listeners": f"PLAINTEXT://{_HOST}:{self._port}",
                "log.dirs": str(work / "kraft"),
            }
        )
        props.update(self._extra)
        lines = ["# Written by revocast.localkafka; rewritten at every start."]
        lines += [f"{key}={value}" for key, value in props.items()]
        return "\n".join(lines) + "\n"

    def _wait_ready(
        self, proc: subprocess.Popen[bytes], work: Path, since: Mapping[str, int]
    ) -> None:
        from kafka.errors import KafkaError  # not at import: 'revocast kafka status' needs none

        deadline = time.monotonic() + self._start_timeout
        # Another broker may already listen on a given port: only ours has this cluster id.
        own_cluster = _formatted_cluster_id(work)
        port_open = False
        last_error = "client port never accepted a connection"
        while time.monotonic() < deadline:
            # After a fatal startup error the JVM lingers ~30 s in shutdown hooks;
            # the log says so at once, so fail on that rather than on the exit.
            if proc.poll() is not None or _fatal_logged(work, since):
                self.kill()
                tail = _log_tail(work, since)
                error = _PortCollision if "Address already in use" in tail else BrokerStartError
                raise error(f"kafka broker failed to start (exit {proc.returncode})", log_tail=tail)
            # With fixed ports Kafka opens the client listener only once it has
            # caught up on metadata, so an accepted connection is a good first gate.
            if not port_open:
                port_open = _accepts_tcp(self.bootstrap_servers)
                if not port_open:
                    time.sleep(0.1)
                    continue
            try:
                cluster = _metadata_round_trip(self.bootstrap_servers)
            except KafkaError as exc:
                last_error = f"metadata request failed: {exc!r}"
                time.sleep(0.2)
                continue
            if own_cluster is not None and cluster != own_cluster:
                last_error = f"{self.bootstrap_servers} answers for another cluster ({cluster})"
                time.sleep(0.2)
                continue
            return
        self.kill()
        raise BrokerStartError(
            f"kafka broker not ready after {self._start_timeout:.0f}s ({last_error})",
            log_tail=_log_tail(work, since),
        )

    def _discard_run(self) -> None:
        """Forget the data directory (deleting it if we made it) and auto-picked ports."""
        if self.is_running():
            self.kill()
        if self._work_dir is not None and self._work_dir != self._given_dir:
            shutil.rmtree(self._work_dir, ignore_errors=True)
        self._work_dir = self._given_dir
        if not self._fixed_ports:
            self._port = self._controller_port = None

    def _close_output(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None


def _find_java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    candidate = Path(java_home, "bin", "java") if java_home else None
    if candidate is not None and candidate.is_file():
        return str(candidate)
    java = shutil.which("java")
    if java is None:
        raise BrokerStartError(
            "'java' not found (JAVA_HOME unset and not on PATH); the local Kafka broker "
            "needs Java 17+, e.g. 'apt-get install openjdk-17-jre-headless'"
        )
    return java


def _die_with_parent() -> Callable[[], None] | None:
    """Return a ``preexec_fn`` making the child get SIGKILL when its parent thread dies."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here: no dlopen after fork
    parent = os.getpid()

    def preexec() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # The parent may have died between fork() and prctl(); then nobody would
        # deliver the signal, so deliver it ourselves.
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _free_ports(count: int) -> tuple[int, int]:
    """Ports the kernel just handed out; all sockets stay open until all are picked."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((_HOST, 0))
            socks.append(sock)
        ports = [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    return ports[0], ports[1]


def _accepts_tcp(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def _metadata_round_trip(bootstrap: str) -> str | None:
    """Return the cluster id of the broker answering at *bootstrap*."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap,
        client_id="revocast-localkafka-probe",
        # Short, so that the readiness loop re-checks the JVM between attempts.
        request_timeout_ms=3000,
        bootstrap_timeout_ms=3000,
    )
    try:
        cluster_id = admin.describe_cluster().get("cluster_id")
    finally:
        admin.close()
    return str(cluster_id) if cluster_id is not None else None


def _formatted_cluster_id(work: Path) -> str | None:
    """The ``cluster.id`` the storage in *work* was formatted with, if readable."""
    try:
        text = (work / "kraft" / "meta.properties").read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() == "cluster.id":
            return value.strip()
    return None


def _cluster_id() -> str:
    # Kafka's own format: 16 random bytes, URL-safe base64 without padding,
    # never starting with '-' (it would read as a command-line flag).
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


_LOG_NAMES = ("broker.log", "broker.out")


def _log_sizes(work: Path) -> dict[str, int]:
    sizes = {}
    for name in _LOG_NAMES:
        try:
            sizes[name] = (work / name).stat().st_size
        except FileNotFoundError:
            sizes[name] = 0
    return sizes


def _read_log(work: Path, name: str, since: Mapping[str, int]) -> str:
    """The part of log *name* written after it was *since[name]* bytes long."""
    with (work / name).open("rb") as log:
        log.seek(since.get(name, 0))
        return log.read().decode(errors="replace")


def _fatal_logged(work: Path, since: Mapping[str, int]) -> bool:
    try:
        return _FATAL_MARKER in _read_log(work, "broker.log", since)
    except FileNotFoundError:
        return False


def _log_tail(work: Path, since: Mapping[str, int]) -> str:
    parts = []
    for name in _LOG_NAMES:
        try:
            text = _read_log(work, name, since)
        except FileNotFoundError:
            continue
        if text.strip():
            parts.append(f"[{name}]\n{_last_lines(text)}")
    return "\n".join(parts)


def _last_lines(text: str) -> str:
    return "\n".join(text.strip().splitlines()[-_TAIL_LINES:])
