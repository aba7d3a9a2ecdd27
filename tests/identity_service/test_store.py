from __future__ import annotations

import os
import stat
from pathlib import Path

from identity_service._store import Store


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
