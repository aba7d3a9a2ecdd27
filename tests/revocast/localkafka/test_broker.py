"""LocalKafkaBroker against a real JVM: lifecycle, isolation, crash behaviour."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from revocast.localkafka import BrokerStartError, LocalKafkaBroker, _broker, resolve_jars
from tests._kafka_fixtures import (
    MakeTopic,
    create_topic,
    pid_alive,
    produce,
    read_values,
    wait_until,
)

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.kafka


def test_record_round_trips_through_the_session_broker(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    topic = make_topic(partitions=3, cleanup_policy="compact")

    produce(kafka_bootstrap, topic, b"k1-revoked", key=b"jti-1", partition=2)

    assert read_values(kafka_bootstrap, topic, 1, partition=2) == [b"k1-revoked"]


@pytest.fixture
def maven_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Leave only ``java`` and a tattling fake ``mvn`` on PATH; return the tattle file."""
    resolve_jars()  # the claim under test is about starts *after* the cache is filled
    java = shutil.which("java")
    assert java is not None
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "java").symlink_to(os.path.realpath(java))
    tattle = tmp_path / "mvn-was-called"
    mvn = bin_dir / "mvn"
    mvn.write_text(f"#!/bin/sh\ntouch {tattle}\nexit 1\n")
    mvn.chmod(mvn.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return tattle


def test_two_brokers_start_from_cached_jars_without_maven_on_own_ports_and_dirs(
    maven_unavailable: Path,
) -> None:
    first, second = LocalKafkaBroker(), LocalKafkaBroker()
    try:
        first.start()
        second.start()

        assert not maven_unavailable.exists()
        assert {first.port, first.controller_port}.isdisjoint({second.port, second.controller_port})
        assert first.data_dir != second.data_dir
        for broker, value in ((first, b"one"), (second, b"two")):
            topic = create_topic(broker.bootstrap_servers, partitions=1)
            produce(broker.bootstrap_servers, topic, value)
            assert read_values(broker.bootstrap_servers, topic, 1) == [value]
    finally:
        first.stop()
        second.stop()


def test_stop_leaves_no_process_and_removes_the_data_dir(
    private_broker: LocalKafkaBroker,
) -> None:
    pid, data_dir = private_broker.pid, private_broker.data_dir
    assert pid is not None
    assert data_dir is not None
    assert data_dir.is_dir()

    private_broker.stop()

    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not data_dir.exists()
    assert not private_broker.is_running()


def test_record_survives_kill_and_restart_on_the_same_address(
    private_broker: LocalKafkaBroker,
) -> None:
    bootstrap = private_broker.bootstrap_servers
    topic = create_topic(bootstrap, partitions=1)
    produce(bootstrap, topic, b"written-before-crash")
    killed_pid = private_broker.pid
    assert killed_pid is not None

    private_broker.kill()
    assert not private_broker.is_running()
    private_broker.restart()

    assert private_broker.bootstrap_servers == bootstrap
    assert private_broker.pid != killed_pid
    assert read_values(bootstrap, topic, 1) == [b"written-before-crash"]


@contextmanager
def socket_listening() -> Iterator[int]:
    """Hold a listening socket on 127.0.0.1; yield its port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_given_port_in_use_fails_fast_with_the_broker_log() -> None:
    with socket_listening() as busy_port:
        broker = LocalKafkaBroker(port=busy_port, start_timeout=60)
        with pytest.raises(BrokerStartError, match="Address already in use"):
            broker.start()
    assert not broker.is_running()


def test_jvm_dies_when_the_python_process_that_started_it_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import sys
        from revocast.localkafka import LocalKafkaBroker
        broker = LocalKafkaBroker().start()
        print(broker.pid, broker.data_dir, flush=True)
        sys.stdin.read()  # hold the broker until this process is SIGKILLed
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    jvm_pid = 0
    data_dir = ""
    try:
        assert parent.stdout is not None
        line = parent.stdout.readline()  # bounded by the broker's own start timeout
        jvm_pid, data_dir = int(line.split()[0]), line.split()[1]
        assert pid_alive(jvm_pid)

        parent.send_signal(signal.SIGKILL)
        parent.wait()

        wait_until(lambda: not pid_alive(jvm_pid), timeout=10, message="JVM died with parent")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if jvm_pid and pid_alive(jvm_pid):
            os.kill(jvm_pid, signal.SIGKILL)
        for stream in (parent.stdin, parent.stdout):
            if stream is not None:
                stream.close()
        if data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)


def test_auto_picked_port_taken_by_another_process_is_retried_on_new_ports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_free_ports = _broker._free_ports
    handed_out: list[tuple[int, int]] = []

    with socket_listening() as busy_port:

        def first_pick_collides(count: int) -> tuple[int, int]:
            ports = real_free_ports(count)
            if not handed_out:
                # The controller port: the JVM binds it first, so this attempt fails
                # about a second sooner than on the client port, bound after catch-up.
                ports = (ports[0], busy_port)
            handed_out.append(ports)
            return ports

        monkeypatch.setattr(_broker, "_free_ports", first_pick_collides)
        with LocalKafkaBroker() as broker:
            assert len(handed_out) == 2
            assert (broker.port, broker.controller_port) == handed_out[1]
            assert busy_port not in handed_out[1]
            assert create_topic(broker.bootstrap_servers, partitions=1)


def test_given_port_held_by_another_kafka_broker_is_not_taken_for_ours(
    kafka_bootstrap: str,
) -> None:
    # The other broker answers metadata requests on the port our JVM cannot bind, so a
    # readiness probe that accepts any broker would report this failed start as a success.
    host, _, port = kafka_bootstrap.split(",")[0].rpartition(":")
    if host not in {"127.0.0.1", "localhost"}:
        pytest.skip("needs the session broker on 127.0.0.1")
    broker = LocalKafkaBroker(port=int(port), start_timeout=60)
    try:
        with pytest.raises(BrokerStartError, match="Address already in use"):
            broker.start()
        assert not broker.is_running()
    finally:
        broker.stop()


def test_fatal_error_logged_by_an_earlier_run_does_not_fail_this_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A given data_dir keeps broker.log (log4j appends) from a start that failed because its
    # port was taken; a later start must be judged on its own log lines. The fake JVM never
    # becomes ready, so the honest outcome is the readiness timeout.
    work = tmp_path / "work"
    (work / "kraft").mkdir(parents=True)
    (work / "kraft" / "meta.properties").write_text("cluster.id=earlier-run\n")
    (work / "broker.log").write_text(
        "[2026-01-01] ERROR Exiting Kafka due to fatal exception (kafka.Kafka$)\n"
        "java.net.BindException: Address already in use\n"
    )
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\nexec sleep 60\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    monkeypatch.setattr(_broker, "resolve_jars", lambda: tmp_path)
    port, controller_port = _broker._free_ports(2)
    broker = LocalKafkaBroker(
        port=port, controller_port=controller_port, data_dir=work, start_timeout=1
    )

    with pytest.raises(BrokerStartError, match="not ready after 1s") as failure:
        broker.start()

    assert "Address already in use" not in str(failure.value)
    assert not broker.is_running()
    assert work.is_dir()


def test_storage_format_outlasting_the_start_timeout_is_a_start_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # subprocess.TimeoutExpired escaped start(): 'revocast kafka up --timeout 1' printed a
    # traceback instead of one line.
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\nexec sleep 60\n")  # a JVM that never finishes formatting
    java.chmod(0o755)
    monkeypatch.setattr(_broker, "_find_java", lambda: str(java))
    monkeypatch.setattr(_broker, "resolve_jars", lambda: tmp_path)
    broker = LocalKafkaBroker(start_timeout=0.5)
    with pytest.raises(BrokerStartError, match=r"format did not finish within 0\.5s"):
        broker.start()
    assert not broker.is_running()
    assert broker.data_dir is None  # its temporary directory is gone too
