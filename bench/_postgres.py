"""A throwaway PostgreSQL server on a free loopback port, and the "tokens log" lookup on it.

Debian's ``postgresql`` package (``scripts/_env.sh``'s ``need_postgres`` installs it) puts
the binaries under ``/usr/lib/postgresql/<version>/bin``, off PATH. ``initdb`` refuses to run
as root, so as root both it and the server run as the ``postgres`` user, in a temp data dir
owned by it. The server is our direct child (``Popen(user=...)``), not a ``runuser``
process's: ``runuser`` does not pass SIGINT on, so the fast shutdown never reached the
server (tried). Durability is off (``fsync``, ``synchronous_commit``): the bench measures
reads of a table it throws away.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from bench._redis import free_port

__all__ = ["PostgresUnavailableError", "RevokedJtis", "find_bin_dir", "postgres_server"]

_DEBIAN_ROOT = Path("/usr/lib/postgresql")


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL could not be found or started here; the message says why."""


def find_bin_dir(debian_root: Path = _DEBIAN_ROOT) -> Path | None:
    """The directory holding ``initdb`` and ``postgres``: PATH first, else Debian's newest."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        return Path(on_path).parent
    versions = sorted(
        (p for p in debian_root.glob("*/bin") if (p / "initdb").is_file()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else -1,
    )
    return versions[-1] if versions else None


@contextlib.contextmanager
def postgres_server(timeout: float = 30.0) -> Iterator[psycopg.Connection[Any]]:
    """Run PostgreSQL for the block; yield an autocommit connection over loopback TCP."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise PostgresUnavailableError(
            "PostgreSQL not found (apt-get install -y postgresql, or initdb on PATH)"
        )
    user: int | None = None
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres").pw_uid
        except KeyError:
            raise PostgresUnavailableError("running as root and no 'postgres' user") from None
    with tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        if user is not None:
            os.chown(tmp, user, pwd.getpwuid(user).pw_gid)
        data = Path(tmp) / "data"
        init = subprocess.run(
            [bin_dir / "initdb", "-D", data, "-U", "bench", "--auth=trust", "-E", "UTF8",
             "--no-sync", "--no-instructions"],
            capture_output=True, text=True, user=user, timeout=timeout, check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise PostgresUnavailableError(f"initdb failed: {init.stderr.strip()[-300:]}")
        port = free_port()
        proc = subprocess.Popen(
            [bin_dir / "postgres", "-D", data, "-k", tmp, "-h", "127.0.0.1", "-p", str(port),
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user,
        )  # fmt: skip
        conn: psycopg.Connection[Any] | None = None
        try:
            deadline = time.monotonic() + timeout
            while conn is None:
                try:
                    conn = psycopg.connect(
                        host="127.0.0.1", port=port, user="bench", dbname="postgres",
                        autocommit=True, connect_timeout=5,
                    )  # fmt: skip
                except psycopg.OperationalError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise PostgresUnavailableError(
                            f"postgres did not start on port {port}"
                        ) from None
                    time.sleep(0.05)
            yield conn
        finally:
            if conn is not None:
                conn.close()
            proc.send_signal(signal.SIGINT)  # fast shutdown: ends every backend too
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class RevokedJtis:
    """The "tokens log": an indexed table of revoked jtis, looked up per request with
    ``SELECT 1 ... WHERE jti = $1`` (a prepared statement) over one persistent connection."""

    _QUERY = "SELECT 1 FROM revoked WHERE jti = %s"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn
        conn.execute("DROP TABLE IF EXISTS revoked")
        conn.execute("CREATE TABLE revoked (jti text PRIMARY KEY, expires_at timestamptz)")
        self._cursor = conn.cursor()

    def fill(self, start: int, stop: int) -> None:
        """Revoke ``jti-<i>`` for ``start <= i < stop`` (the names the state is filled with)."""
        with (
            self._conn.cursor() as cur,
            cur.copy("COPY revoked (jti, expires_at) FROM STDIN") as cp,
        ):
            for i in range(start, stop):
                cp.write_row((f"jti-{i:09d}", "infinity"))
        self._conn.execute("ANALYZE revoked")

    def is_revoked(self, jti: str) -> bool:
        self._cursor.execute(self._QUERY, (jti,), prepare=True)
        return self._cursor.fetchone() is not None
