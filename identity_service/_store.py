"""SQLite storage: users, refresh-token families, signing keys.

One connection per call keeps the store safe to use from FastAPI's threadpool.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RefreshToken", "SigningKeyRow", "Store", "User"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    blocked INTEGER NOT NULL DEFAULT 0,
    is_admin INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    username TEXT NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS refresh_family ON refresh_tokens(family);
CREATE TABLE IF NOT EXISTS families (
    family TEXT PRIMARY KEY,
    username TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS signing_keys (
    kid TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at REAL NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    password_hash: str = field(repr=False)
    version: int
    blocked: bool
    is_admin: bool


@dataclass(frozen=True, slots=True)
class RefreshToken:
    family: str
    username: str
    expires_at: float
    used: bool
    family_revoked: bool


@dataclass(frozen=True, slots=True)
class SigningKeyRow:
    # Not in the repr: error trackers and debuggers print the locals of a failing frame.
    kid: str
    private_pem: str = field(repr=False)
    active: bool
    revoked: bool


def token_hash(token: str) -> str:
    """Refresh tokens are stored hashed: a leaked database holds no usable token."""
    return hashlib.sha256(token.encode()).hexdigest()


class Store:
    def __init__(self, path: Path) -> None:
        self._path = path
        # The database holds the private signing keys: owner-only, whatever the umask (SQLite
        # gives its -wal and -shm files the database file's permissions).
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        path.chmod(0o600)
        self._write_lock = threading.Lock()
        with self._connect() as db:
            db.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self._path, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            with db:
                yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds SQLite's write lock from its first statement:
        a check and the update that depends on it (a refresh token's ``used``, a session's
        password) are atomic across processes too, not only across this one's threads."""
        with self._write_lock, self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            yield db

    # users
    def add_user(self, username: str, password_hash: str, *, is_admin: bool = False) -> bool:
        """Add a user unless one by that name exists (its password, version and block stay):
        False then."""
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO users(username, password_hash, is_admin) VALUES (?,?,?)",
                (username, password_hash, int(is_admin)),
            )
        return cur.rowcount == 1

    def user(self, username: str) -> User | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT username, password_hash, version, blocked, is_admin FROM users "
                "WHERE username = ?",
                (username,),
            ).fetchone()
        if row is None:
            return None
        return User(row[0], row[1], row[2], bool(row[3]), bool(row[4]))

    def set_password(self, username: str, password_hash: str) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )

    def change_password(self, username: str, password_hash: str) -> None:
        """Set a new password and end every session of ``username``, in one transaction: a new
        password must never be stored while the sessions of the old one can still refresh."""
        with self._write() as db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )
            db.execute("UPDATE families SET revoked = 1 WHERE username = ?", (username,))

    def rehash_password(self, username: str, old_hash: str, new_hash: str) -> bool:
        """Replace ``old_hash`` by ``new_hash`` (the same password at another cost) unless the
        password changed since it was read: a login re-hashing the old password must never
        undo a password change that committed meanwhile."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?",
                (new_hash, username, old_hash),
            )
        return cur.rowcount == 1

    def delete_user(self, username: str) -> bool:
        """Delete the account with its sessions and refresh tokens; False if there was none.
        A login or refresh minting tokens meanwhile finds no user and adds nothing."""
        with self._write() as db:
            db.execute("DELETE FROM refresh_tokens WHERE username = ?", (username,))
            db.execute("DELETE FROM families WHERE username = ?", (username,))
            cur = db.execute("DELETE FROM users WHERE username = ?", (username,))
        return cur.rowcount == 1

    def bump_version(self, username: str) -> int:
        with self._write() as db:
            db.execute("UPDATE users SET version = version + 1 WHERE username = ?", (username,))
            row = db.execute("SELECT version FROM users WHERE username = ?", (username,)).fetchone()
        return int(row[0])

    def set_blocked(self, username: str, blocked: bool) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE users SET blocked = ? WHERE username = ?", (int(blocked), username)
            )
        return cur.rowcount == 1

    # refresh-token families (one family per login session: the family id is the sid)
    def add_refresh_token(
        self, token: str, family: str, username: str, expires_at: float, *, password_hash: str
    ) -> bool:
        """Add ``token`` to ``family`` if ``username`` still has ``password_hash``, is not
        blocked and the family is not revoked, atomically; False (nothing added) otherwise.

        A login checks the password long before it mints tokens (scrypt); a password change,
        block or logout-everywhere that commits in between must win, or the session it ends
        would be created after it and live on."""
        with self._write() as db:
            live = db.execute(
                "SELECT 1 FROM users WHERE username = ? AND password_hash = ? AND blocked = 0 "
                "AND NOT EXISTS (SELECT 1 FROM families WHERE family = ? AND revoked = 1)",
                (username, password_hash, family),
            ).fetchone()
            if live is None:
                return False
            db.execute(
                "INSERT OR IGNORE INTO families(family, username) VALUES (?, ?)", (family, username)
            )
            db.execute(
                "INSERT INTO refresh_tokens(token_hash, family, username, expires_at) "
                "VALUES (?,?,?,?)",
                (token_hash(token), family, username, expires_at),
            )
        return True

    def use_refresh_token(self, token: str) -> RefreshToken | None:
        """Look a token up and mark it used, atomically; returns its state *before* this use."""
        with self._write() as db:
            row = db.execute(
                "SELECT r.family, r.username, r.expires_at, r.used, f.revoked "
                "FROM refresh_tokens r JOIN families f ON f.family = r.family "
                "WHERE r.token_hash = ?",
                (token_hash(token),),
            ).fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE refresh_tokens SET used = 1 WHERE token_hash = ?", (token_hash(token),)
            )
        return RefreshToken(row[0], row[1], row[2], bool(row[3]), bool(row[4]))

    def revoke_family(self, family: str) -> None:
        with self._write() as db:
            db.execute("UPDATE families SET revoked = 1 WHERE family = ?", (family,))

    def revoke_families_of(self, username: str) -> list[str]:
        with self._write() as db:
            rows = db.execute(
                "SELECT family FROM families WHERE username = ? AND revoked = 0", (username,)
            ).fetchall()
            db.execute("UPDATE families SET revoked = 1 WHERE username = ?", (username,))
        return [r[0] for r in rows]

    # signing keys
    def add_key(self, kid: str, private_pem: str, created_at: float) -> None:
        """Add a key that is published in the JWKS but does not sign yet."""
        with self._write() as db:
            db.execute(
                "INSERT INTO signing_keys(kid, private_pem, created_at, active) VALUES (?,?,?,0)",
                (kid, private_pem, created_at),
            )

    def activate_key(self, kid: str) -> None:
        with self._write() as db:
            db.execute("UPDATE signing_keys SET active = (kid = ?)", (kid,))

    def signing_keys(self) -> list[SigningKeyRow]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT kid, private_pem, active, revoked FROM signing_keys ORDER BY created_at"
            ).fetchall()
        return [SigningKeyRow(r[0], r[1], bool(r[2]), bool(r[3])) for r in rows]

    def revoke_key(self, kid: str) -> bool:
        with self._write() as db:
            cur = db.execute(
                "UPDATE signing_keys SET revoked = 1, active = 0 WHERE kid = ?", (kid,)
            )
        return cur.rowcount == 1
