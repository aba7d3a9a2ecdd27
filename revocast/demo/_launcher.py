"""Starts the demo's processes, waits until each answers, and stops every one of them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from revocast.demo._stack import ServiceSpec

__all__ = ["LaunchError", "ProcessGroup", "free_port", "port_is_free"]


class LaunchError(RuntimeError):
    """A demo process failed to start; the message carries the tail of its log."""


def port_is_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    libc = ctypes.CDLL("libc.so.6", use_errno=True)

    def preexec() -> None:
        os.setpgrp()  # own process group: stopping it also stops gunicorn's workers
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: no orphan if the launcher dies

    return preexec


class ProcessGroup:
    """The demo's child processes. Each logs to ``<log_dir>/<name>.log``."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self._procs: list[tuple[ServiceSpec, subprocess.Popen[bytes], IO[bytes]]] = []

    def start(self, spec: ServiceSpec, python: str, *, timeout: float = 60.0) -> None:
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self._log_dir / f"{spec.name}.log"
        log = log_path.open("wb")
        # The stack sets every REVOCAST_* its services read: one left in the caller's shell
        # (fail-open, another topic, a cluster's SASL settings) must not change the demo.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_")}
        env = {**inherited, **spec.env, "PYTHONUNBUFFERED": "1"}
        # preexec_fn only sets the process group and PDEATHSIG (async-signal-safe calls).
        proc = subprocess.Popen(
            [python, *spec.argv],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            preexec_fn=_die_with_parent(),
        )
        self._procs.append((spec, proc, log))
        if spec.port is None or spec.health_path is None:
            return
        url = f"http://127.0.0.1:{spec.port}{spec.health_path}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise LaunchError(f"{spec.name} exited with {proc.returncode}:\n{_tail(log_path)}")
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(url, timeout=1) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        raise LaunchError(f"{spec.name} did not answer {url} in {timeout:.0f}s:\n{_tail(log_path)}")

    def check_alive(self) -> None:
        for spec, proc, _ in self._procs:
            if proc.poll() is not None:
                raise LaunchError(
                    f"{spec.name} exited with {proc.returncode}:\n"
                    f"{_tail(self._log_dir / f'{spec.name}.log')}"
                )

    def pids(self) -> Iterator[tuple[str, int]]:
        for spec, proc, _ in self._procs:
            yield spec.name, proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM every process group (newest first), then SIGKILL what is left."""
        for _, proc, _ in reversed(self._procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _, proc, log in reversed(self._procs):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.close()
        self._procs.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:])
