"""``revocast kafka up|down|status``: a local Kafka broker that outlives the command.

``up`` starts a detached :class:`~revocast.localkafka.LocalKafkaBroker` and records
it in a JSON state file, so that ``status`` and ``down`` in later shells find it::

    export "$(revocast kafka up)"   # KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:PORT, for children too
    revocast kafka status
    revocast kafka down

``up`` and ``down`` hold an exclusive lock on ``<state file>.lock`` while they run, so
two started at once never both start a JVM: the second waits, then finds the first's.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from revocast.cli._common import CommandError, port
from revocast.localkafka import BrokerStartError, LocalKafkaBroker, LocalKafkaError, cache_dir

__all__ = ["register"]

_STOP_TIMEOUT_S = 30.0
_DATA_DIR_PREFIX = "revocast-kafka-"
"""How :class:`LocalKafkaBroker` names the temporary data directory of the brokers ``up`` starts."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``kafka up``, ``kafka down`` and ``kafka status``."""
    kafka = subparsers.add_parser("kafka", help="run a local Kafka broker (Java 17 + Maven)")
    commands = kafka.add_subparsers(dest="kafka_command", metavar="ACTION", required=True)

    up = commands.add_parser("up", help="start a broker in the background")
    up.add_argument("--port", type=port, default=None, help="client port (default: a free one)")
    up.add_argument("--heap", default="384m", help="JVM -Xmx (default: %(default)s)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for readiness")
    up.set_defaults(func=_up)

    down = commands.add_parser("down", help="stop the broker and delete its data")
    down.set_defaults(func=_down)

    status = commands.add_parser("status", help="exit 0 if the broker runs, else 1")
    status.set_defaults(func=_status)

    for parser in (up, down, status):
        parser.add_argument(
            "--state-file",
            type=Path,
            default=None,
            help="where the broker is recorded (default: <cache>/kafka-up.json)",
        )


def _up(args: argparse.Namespace) -> int:
    path = _state_path(args)
    with _serialised(path):
        return _start(path, args)


def _start(path: Path, args: argparse.Namespace) -> int:
    state = _read_state(path)
    if state is not None and _alive(state):
        print(f"kafka already running (pid {state['pid']})", file=sys.stderr)
        print(f"KAFKA_BOOTSTRAP_SERVERS={state['bootstrap_servers']}")
        return 0
    if state is not None:
        _forget(path, state)  # left by a broker that died or a machine that rebooted
    broker = LocalKafkaBroker(
        port=args.port, heap=args.heap, start_timeout=args.timeout, detached=True
    )
    try:
        broker.start()
    except BrokerStartError as exc:
        if exc.log_tail:
            print(exc.log_tail, file=sys.stderr)
        raise CommandError(str(exc).splitlines()[0]) from exc
    except LocalKafkaError as exc:
        raise CommandError(" ".join(str(exc).split())) from exc
    state = {
        "pid": broker.pid,
        "bootstrap_servers": broker.bootstrap_servers,
        "port": broker.port,
        "controller_port": broker.controller_port,
        "data_dir": str(broker.data_dir),
        "log_file": str(broker.log_file),
    }
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(json.dumps(state, indent=2) + "\n")
    scratch.replace(path)
    print(f"KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}")
    return 0


def _down(args: argparse.Namespace) -> int:
    path = _state_path(args)
    with _serialised(path):
        return _stop(path)


def _stop(path: Path) -> int:
    state = _read_state(path)
    if state is None:
        print("kafka not running")
        return 0
    pid = int(state["pid"])
    if _alive(state):
        os.kill(pid, signal.SIGTERM)  # controlled shutdown
        if not _wait_dead(state, _STOP_TIMEOUT_S):
            os.kill(pid, signal.SIGKILL)
            if not _wait_dead(state, 10.0):
                raise CommandError(f"kafka broker pid {pid} survived SIGKILL")
    _forget(path, state)
    print("kafka stopped")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _read_state(_state_path(args))
    if state is None or not _alive(state):
        print("kafka not running")
        return 1
    print(
        f"kafka running (pid {state['pid']}) KAFKA_BOOTSTRAP_SERVERS={state['bootstrap_servers']}"
    )
    return 0


def _state_path(args: argparse.Namespace) -> Path:
    explicit: Path | None = args.state_file
    return explicit if explicit is not None else cache_dir() / "kafka-up.json"


@contextmanager
def _serialised(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` beside the state file, waiting while another holds it.

    The kernel drops the lock when its holder dies, so a killed ``up`` never blocks the
    next one; the JVM does not inherit it (the descriptor is not inheritable).
    """
    lock = path.with_name(path.name + ".lock")
    try:
        lock.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CommandError(f"cannot open lock file {lock}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for another 'revocast kafka up/down' (lock {lock})", file=sys.stderr)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _read_state(path: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read state file {path}: {exc}") from exc
    if (
        not isinstance(state, dict)
        or type(state.get("pid")) is not int
        or not isinstance(state.get("bootstrap_servers"), str)
        or not isinstance(state.get("data_dir"), str)
        # _alive() finds the JVM by its data directory on a command line: "" or "/" is on
        # every one, and 'down' would signal whatever process has the recorded pid.
        or not Path(state["data_dir"]).name.startswith(_DATA_DIR_PREFIX)
    ):
        raise CommandError(f"state file {path} is not from 'revocast kafka up'; delete it")
    return state


def _forget(path: Path, state: dict[str, Any]) -> None:
    data_dir = Path(state["data_dir"])
    # Only ever delete what LocalKafkaBroker created: a hand-edited state file
    # must not turn 'down' into 'rm -rf' of an arbitrary directory.
    if data_dir.name.startswith(_DATA_DIR_PREFIX):
        shutil.rmtree(data_dir, ignore_errors=True)
    path.unlink(missing_ok=True)


def _alive(state: dict[str, Any]) -> bool:
    """Whether the recorded JVM still runs; guards against PID reuse and zombies."""
    pid = int(state["pid"])
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # not Linux: best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        cmdline = (proc / "cmdline").read_bytes()
        stat = (proc / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # The JVM was reparented when 'up' exited; until init reaps it, a dead
    # broker lingers as a zombie ('Z'), which must count as stopped.
    process_state = stat.rpartition(")")[2].split()[0]
    return process_state not in {"Z", "X"} and state["data_dir"].encode() in cmdline


def _wait_dead(state: dict[str, Any], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(state):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
