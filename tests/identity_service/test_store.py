from __future__ import annotations

import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from identity_service._revocations import Revocation, watermark_after
from identity_service._store import RefreshToken, Store


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_database_holding_private_signing_keys_is_readable_by_its_owner_only(
    tmp_path: Path,
) -> None:
    old = os.umask(0o022)
    try:
        db = tmp_path / "new-dir" / "idp.sqlite3"
        store = Store(db)
        store.add_key("k-1", "-----BEGIN PRIVATE KEY-----", 0.0)
    finally:
        os.umask(old)
    assert mode(db) == 0o600
    for journal in db.parent.glob("idp.sqlite3-*"):
        assert mode(journal) & 0o077 == 0, journal
    assert mode(db.parent) & 0o077 == 0


def test_an_existing_world_readable_database_is_made_private(tmp_path: Path) -> None:
    db = tmp_path / "idp.sqlite3"
    Store(db)
    db.chmod(0o644)
    Store(db)
    assert mode(db) == 0o600


class _PausingConnection(sqlite3.Connection):
    """Runs ``pause`` right after the first refresh-token lookup on this connection."""

    pause: Callable[[], None] | None = None

    def execute(self, sql: str, *args: Any) -> sqlite3.Cursor:
        cursor = super().execute(sql, *args)
        if sql.startswith("SELECT r.family") and (pause := type(self).pause) is not None:
            type(self).pause = None
            pause()
        return cursor


def test_two_processes_using_one_refresh_token_at_once_see_the_reuse(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two Store objects on one file stand for two workers (their thread locks are separate):
    # the second use must see the first one's mark, or a stolen token's reuse goes unnoticed.
    db = tmp_path / "idp.sqlite3"
    first, second = Store(db), Store(db)
    first.add_user("alice", "hash")
    assert first.add_refresh_token("tok", "fam", "alice", 1e12, password_hash="hash")
    results: list[RefreshToken | None] = []
    other = threading.Thread(target=lambda: results.append(second.use_refresh_token("tok")))

    def let_the_other_worker_run() -> None:
        other.start()
        other.join(timeout=0.5)  # with the fix it waits for this transaction: not done yet

    real_connect = sqlite3.connect
    _PausingConnection.pause = let_the_other_worker_run

    def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return real_connect(*args, **kwargs, factory=_PausingConnection)

    monkeypatch.setattr("identity_service._store.sqlite3.connect", connect)
    mine = first.use_refresh_token("tok")
    monkeypatch.undo()
    other.join(timeout=10)

    assert mine is not None
    (theirs,) = results
    assert theirs is not None
    assert sorted([mine.used, theirs.used]) == [False, True]


def test_the_repr_of_a_user_or_signing_key_row_holds_no_hash_or_private_key(
    tmp_path: Path,
) -> None:
    # Error trackers and tracebacks with locals print reprs: KeyRing.sign's `active` row
    # carried the whole PEM private key, /login's `user` the password hash.
    store = Store(tmp_path / "idp.sqlite3")
    store.add_user("alice", "scrypt$1024$8$1$c2FsdA==$ZGlnZXN0")
    store.add_key("k1", "-----BEGIN PRIVATE KEY-----\nMIIE...\n-----END PRIVATE KEY-----\n", 0.0)
    user = store.user("alice")
    (key,) = store.signing_keys()
    assert "alice" in repr(user)
    assert "scrypt" not in repr(user)
    assert "k1" in repr(key)
    assert "PRIVATE KEY" not in repr(key)


def test_pending_revocations_outlive_the_store_in_commit_order_until_published(
    tmp_path: Path,
) -> None:
    db = tmp_path / "idp.sqlite3"
    store = Store(db, clock=lambda: 1_000.0)
    store.add_user("alice", "hash")
    blocked = store.set_blocked("alice", True)
    subject = store.revoke_families_of("alice", revocation=Revocation.subject("alice", reason="r"))
    version = store.bump_version("alice", reason="perm")
    assert blocked is not None
    assert subject is not None
    assert version is not None
    assert store.set_blocked("nobody", True) is None
    assert store.bump_version("nobody", reason="perm") is None

    reopened = Store(db)
    assert reopened.pending() == [blocked, subject, version]
    assert subject.revocation.issued_before == watermark_after(1_000.0)
    assert version.revocation.min_version == 1
    reopened.published(subject.seq)
    assert reopened.pending() == [blocked, version]
