"""The PostgreSQL "tokens log" the request-path benchmark compares against, on a real server."""

from __future__ import annotations

import subprocess
from pathlib import Path

import psycopg
import pytest

from bench._postgres import RevokedJtis, find_bin_dir, postgres_server


def test_the_lookup_finds_a_revoked_jti_and_misses_another_on_a_real_server() -> None:
    if find_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (scripts/_env.sh need_postgres installs it)")
    with postgres_server() as conn:
        table = RevokedJtis(conn)
        table.fill(0, 1000)
        assert table.is_revoked("jti-000000999")
        assert not table.is_revoked("jti-000001000")
        assert not table.is_revoked("not-revoked")
        port = conn.info.port
        pid = int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])  # type: ignore[index]
    # Stopped: nothing listens any more and no backend of it is left.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=port, user="bench", connect_timeout=2)
    assert subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode != 0


def test_debian_s_newest_version_is_found_when_initdb_is_not_on_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for version in ("9", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    assert find_bin_dir(tmp_path) == tmp_path / "15" / "bin"
    assert find_bin_dir(tmp_path / "none") is None
