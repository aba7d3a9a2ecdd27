"""Request-path cost per verification: bare PyJWT vs + Revocast vs + Redis ``EXISTS`` vs + SQLite.

Every variant decodes the same token with the same key object; the added cost is the variant's
median minus bare PyJWT's, measured interleaved (one round of each variant, repeated) so the
machine's noise falls on all of them alike. On a busy machine two ~30 µs medians differ by more
than 1 µs by chance, so ``check() alone`` (the revocation lookup by itself) is reported too and
the "times cheaper than Redis" ratio divides by the larger of the two.

The alternatives hold as many revoked jtis as the state: Redis one key per jti (``EXISTS``
over a loopback TCP connection), SQLite an indexed table of revoked jtis in a file in a temp
dir (the "tokens log" approach; ``SELECT 1 ... WHERE jti = ?``).
"""

from __future__ import annotations

import gc
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bench._common import SECRET, fill, median_us, settings
from consumer_sdk import Revocast
from consumer_sdk.testing import InMemorySource

__all__ = ["ALGORITHMS", "HEADER", "RequestRow", "format_row", "run"]

ALGORITHMS = ("HS256", "RS256", "ES256")
_OPTIONS: Any = {"require": ["exp", "iat"]}
_REDIS_BATCH = 10_000


@dataclass(frozen=True)
class RequestRow:
    algorithm: str
    entries: int
    bare_us: float
    revocast_us: float
    redis_us: float
    sqlite_us: float
    check_us: float
    best: tuple[float, float, float, float]
    """The fastest round of bare, Revocast, Redis, SQLite: what the added costs compare."""

    @property
    def revocast_added_us(self) -> float:
        return self.best[1] - self.best[0]

    @property
    def redis_added_us(self) -> float:
        return self.best[2] - self.best[0]

    @property
    def sqlite_added_us(self) -> float:
        return self.best[3] - self.best[0]

    @property
    def ratio(self) -> float:
        """Revocast over bare PyJWT, fastest rounds."""
        return self.best[1] / self.best[0]

    @property
    def redis_vs_revocast(self) -> float:
        """How many times more the Redis lookup adds than the Revocast check (conservative)."""
        return self.redis_added_us / max(self.revocast_added_us, self.check_us)


class _Alg:
    def __init__(self, alg: str, now: int) -> None:
        private: Any
        if alg == "HS256":
            private = public = SECRET
            material: str | bytes = SECRET
        else:
            private = (
                rsa.generate_private_key(public_exponent=65537, key_size=2048)
                if alg == "RS256"
                else ec.generate_private_key(ec.SECP256R1())
            )
            public = private.public_key()
            material = public.public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ).decode()
        self.alg = alg
        self.public = public
        self.jti = str(uuid.uuid4())
        claims = {"sub": "alice", "jti": self.jti, "iat": now, "exp": now + 3600, "sid": "s1"}
        self.token = jwt.encode(claims, private, algorithm=alg, headers={"kid": "k1"})
        self.src = InMemorySource()
        self.rc = Revocast(settings(algorithms=(alg,), jwt_keys={"k1": material}), source=self.src)
        self.src.set_ready()

    def bare(self) -> dict[str, Any]:
        claims: dict[str, Any] = jwt.decode(
            self.token, self.public, algorithms=[self.alg], options=_OPTIONS
        )
        return claims


def _fill_redis(client: redis.Redis, start: int, stop: int) -> None:
    for lo in range(start, stop, _REDIS_BATCH):
        hi = min(stop, lo + _REDIS_BATCH)
        client.mset({f"revoked:jti-{i:09d}": b"1" for i in range(lo, hi)})


def _fill_sqlite(db: sqlite3.Connection, start: int, stop: int) -> None:
    now = time.time()
    with db:
        db.executemany(
            "INSERT INTO revoked (jti, expires_at) VALUES (?, ?)",
            ((f"jti-{i:09d}", now + 3600) for i in range(start, stop)),
        )


def run(redis_client: redis.Redis, sizes: Sequence[int], quick: bool) -> list[RequestRow]:
    now = int(time.time())
    algs = [_Alg(a, now) for a in ALGORITHMS]
    rows: list[RequestRow] = []
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-") as tmp:
        db = sqlite3.connect(Path(tmp) / "tokens.sqlite3")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE revoked (jti TEXT PRIMARY KEY, expires_at REAL) WITHOUT ROWID")
        redis_client.flushdb()
        filled = 0
        try:
            for size in sizes:
                for a in algs:
                    fill(a.rc.state, size - filled, filled)
                _fill_redis(redis_client, filled, size)
                _fill_sqlite(db, filled, size)
                filled = size
                gc.collect()
                for a in algs:
                    rows.append(_measure(a, size, redis_client, db, quick))
                    print(format_row(rows[-1]), flush=True)
        finally:
            db.close()
            redis_client.flushdb()
            for a in algs:
                a.rc.close()
    return rows


def _measure(
    a: _Alg, size: int, client: redis.Redis, db: sqlite3.Connection, quick: bool
) -> RequestRow:
    rc, token, bare = a.rc, a.token, a.bare
    query = "SELECT 1 FROM revoked WHERE jti = ?"

    def with_redis() -> object:
        claims = bare()
        if client.exists(f"revoked:{claims['jti']}"):
            raise jwt.InvalidTokenError("revoked")
        return claims

    def with_sqlite() -> object:
        claims = bare()
        if db.execute(query, (claims["jti"],)).fetchone() is not None:
            raise jwt.InvalidTokenError("revoked")
        return claims

    variants: list[Callable[[], object]] = [bare, lambda: rc.verify(token), with_redis, with_sqlite]
    for fn in variants:  # warm up; a token revoked somewhere would make this a different test
        for _ in range(50):
            fn()
    slow = a.alg != "HS256"
    number = (100 if slow else 300) if quick else (300 if slow else 1000)
    repeat = 11 if quick else 31
    # Every round times each variant once, in alternating order. Medians are what a request
    # pays on this machine; added costs compare the fastest rounds, because other processes
    # only ever add time and a difference of two noisy ~100 µs medians swings by more than
    # the microsecond being measured.
    samples: list[list[float]] = [[] for _ in variants]
    for k in range(repeat):
        order = range(len(variants)) if k % 2 == 0 else reversed(range(len(variants)))
        for i in order:
            samples[i].append(median_us(variants[i], number, 1))
    claims = rc.verify(token)
    check = min(
        median_us(lambda: rc.state.check(claims, "k1"), number * 20, 1) for _ in range(repeat)
    )
    bare_m, ours_m, redis_m, sqlite_m = (statistics.median(x) for x in samples)
    bare_b, ours_b, redis_b, sqlite_b = (min(x) for x in samples)
    best = (bare_b, ours_b, redis_b, sqlite_b)
    return RequestRow(a.alg, size, bare_m, ours_m, redis_m, sqlite_m, check, best)


HEADER = (
    f"{'alg':<6} {'entries':>9} {'bare':>7} {'+Revocast':>9} {'added':>6} {'ratio':>6} "
    f"{'check()':>7} | {'+Redis':>7} {'added':>6} | {'+SQLite':>7} {'added':>6} | "
    f"{'Redis/Revocast added':>20}   (µs per verification, medians)"
)


def format_row(r: RequestRow) -> str:
    return (
        f"{r.algorithm:<6} {r.entries:>9,} {r.bare_us:>7.1f} {r.revocast_us:>9.1f} "
        f"{r.revocast_added_us:>6.2f} {r.ratio:>6.3f} {r.check_us:>7.2f} | "
        f"{r.redis_us:>7.1f} {r.redis_added_us:>6.1f} | {r.sqlite_us:>7.1f} "
        f"{r.sqlite_added_us:>6.1f} | {r.redis_vs_revocast:>19.0f}x"
    )
