"""SQLite storage: users, refresh-token families, signing keys, and the revocations still
owed to the services.

One connection per call keeps the store safe to use from FastAPI's threadpool. Each change
that services must learn of writes its :class:`Revocation` in its own transaction (a
transactional outbox): :meth:`Store.pending` lists those not yet published, in commit order.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from identity_service._revocations import Pending, Revocation, watermark_after

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
CREATE TABLE IF NOT EXISTS pending_revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    sub TEXT,
    issued_before TEXT,
    min_version INTEGER
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
    revocation: Pending | None = None
    """The session revocation this use committed: a reuse of a rotated token."""


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
    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        """``clock`` stamps the watermarks of subject revocations as they commit."""
        self._path = path
        self._clock = clock
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
        """Store a hash as is: it ends no session and publishes nothing (tests, migrations)."""
        with self._write() as db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )

    def change_password(
        self, username: str, password_hash: str, *, revocation: Revocation
    ) -> Pending:
        """Set a new password, end every session of ``username`` and owe ``revocation``, in one
        transaction: a new password must never be stored while the sessions of the old one can
        still refresh, or while their access tokens might never be revoked."""
        with self._write() as db:
            db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (password_hash, username)
            )
            db.execute("UPDATE families SET revoked = 1 WHERE username = ?", (username,))
            return self._owe(db, revocation)

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

    def bump_version(self, username: str, *, reason: str) -> Pending | None:
        """Raise the version of ``username`` and owe its publication (``min_version`` is the
        new version); None if there is no such user."""
        with self._write() as db:
            db.execute("UPDATE users SET version = version + 1 WHERE username = ?", (username,))
            row = db.execute("SELECT version FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                return None
            return self._owe(
                db, Revocation.version(username, min_version=int(row[0]), reason=reason)
            )

    def set_blocked(self, username: str, blocked: bool) -> Pending | None:
        """Block or unblock ``username`` and owe its publication; None if there is no such user."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE users SET blocked = ? WHERE username = ?", (int(blocked), username)
            )
            if cur.rowcount != 1:
                return None
            return self._owe(db, Revocation.block(username, blocked=blocked))

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

    def use_refresh_token(
        self, token: str, *, reuse_reason: str = "refresh_token_reuse"
    ) -> RefreshToken | None:
        """Look a token up and mark it used, atomically; returns its state *before* this use.

        A live family's token used a second time was stolen: the same transaction revokes the
        family and owes the session's revocation (``RefreshToken.revocation``)."""
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
            owed = None
            if row[3] and not row[4]:
                db.execute("UPDATE families SET revoked = 1 WHERE family = ?", (row[0],))
                owed = self._owe(db, Revocation.session(row[0], sub=row[1], reason=reuse_reason))
        return RefreshToken(row[0], row[1], row[2], bool(row[3]), bool(row[4]), owed)

    def session_live(self, family: str, username: str) -> bool:
        """Whether session ``family`` of ``username`` exists and was not ended (logout, logout
        everywhere, password change, block, refresh-token reuse)."""
        with self._connect() as db:
            row = db.execute(
                "SELECT 1 FROM families WHERE family = ? AND username = ? AND revoked = 0",
                (family, username),
            ).fetchone()
        return row is not None

    def revoke_family(self, family: str, *, revocation: Revocation) -> Pending:
        with self._write() as db:
            db.execute("UPDATE families SET revoked = 1 WHERE family = ?", (family,))
            return self._owe(db, revocation)

    def revoke_families_of(
        self, username: str, *, revocation: Revocation | None = None
    ) -> Pending | None:
        """End every session of ``username``; owe ``revocation`` if given."""
        with self._write() as db:
            db.execute("UPDATE families SET revoked = 1 WHERE username = ?", (username,))
            return None if revocation is None else self._owe(db, revocation)

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

    def revoke_key(self, kid: str, *, reason: str) -> Pending | None:
        """Revoke ``kid`` (again, if it already was) and owe its publication; None if unknown."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE signing_keys SET revoked = 1, active = 0 WHERE kid = ?", (kid,)
            )
            if cur.rowcount != 1:
                return None
            return self._owe(db, Revocation.key(kid, reason=reason))

    # revocations owed to the services (the outbox)
    def _owe(self, db: sqlite3.Connection, revocation: Revocation) -> Pending:
        if revocation.kind == "subject" and revocation.issued_before is None:
            # Read under the write lock (BEGIN IMMEDIATE): every session committed before this
            # transaction read its iat earlier, so the watermark is above it.
            revocation = Revocation(
                "subject",
                revocation.target,
                revocation.reason,
                issued_before=watermark_after(self._clock()),
            )
        issued_before = revocation.issued_before
        cur = db.execute(
            "INSERT INTO pending_revocations"
            "(kind, target, reason, sub, issued_before, min_version) VALUES (?,?,?,?,?,?)",
            (
                revocation.kind,
                revocation.target,
                revocation.reason,
                revocation.sub,
                None if issued_before is None else issued_before.isoformat(),
                revocation.min_version,
            ),
        )
        assert cur.lastrowid is not None
        return Pending(cur.lastrowid, revocation)

    def pending(self) -> list[Pending]:
        """The revocations committed and not yet published, in commit order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT seq, kind, target, reason, sub, issued_before, min_version "
                "FROM pending_revocations ORDER BY seq"
            ).fetchall()
        return [
            Pending(
                r[0],
                Revocation(
                    r[1],
                    r[2],
                    r[3],
                    sub=r[4],
                    issued_before=None if r[5] is None else datetime.fromisoformat(r[5]),
                    min_version=r[6],
                ),
            )
            for r in rows
        ]

    def published(self, seq: int) -> None:
        """Forget the pending revocation ``seq``: the publisher has returned for it."""
        with self._write() as db:
            db.execute("DELETE FROM pending_revocations WHERE seq = ?", (seq,))
