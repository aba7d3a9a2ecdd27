"""Request-path cost per verification: bare PyJWT vs + Revocast vs + Redis ``EXISTS`` vs + SQLite
vs + PostgreSQL.

Every variant decodes the same token with the same key object, measured interleaved (one round
of each variant, repeated, in alternating order) so the machine's noise falls on all of them
alike. Two measures of what Revocast adds, reported side by side:

- **end to end**: the fastest round of ``Revocast.verify`` minus the fastest round of bare PyJWT
  (``jwt.PyJWT(options).decode_complete`` with the same key, algorithms and required claims).
  On this shared 2-core box a bare HS256 decode takes 60-100 µs and two such timings differ by
  more than 1 µs by chance, so this difference is mostly noise, in either direction.
- **direct**: the same ``Revocast.verify`` code with PyJWT's ``decode_complete`` replaced by a
  stub that returns the already-decoded result (fresh dicts and fresh ``jti``/``sub``/``sid``
  strings each call, as JSON parsing gives, so string hashes are not cached; it also
  converts ``str`` to ``bytes`` as PyJWT does), minus the stub called alone. What remains is
  exactly Revocast's extra work: bytes conversion, size bound, key selection, claim type
  checks, status check and ``state.check``. Each round times the two back to back over ~1 ms
  and the reported figure is the median of the per-round differences, which is stable to a
  few tens of ns even under load. It slightly overstates: the stub's caller-side keyword
  arguments and our ``str`` -> ``bytes`` are counted in full.

``check() alone`` is ``state.check`` measured the same direct way, and so is the Redis
``EXISTS`` (stubbed decode + ``EXISTS``, minus the stub): the "Redis added / Revocast added"
ratio divides the two direct figures, since the end-to-end Redis figure swings with the bare
decode as much as Revocast's does. The ``cached hit`` column is ``Revocast.verify`` with
``verify_cache_size`` set and the token already cached (time claims, status and revocation
still checked; the signature check skipped).

The alternatives hold as many revoked jtis as the state: Redis one key per jti (``EXISTS``
over a loopback TCP connection), SQLite an indexed table of revoked jtis in a file in a temp
dir (the "tokens log" approach; ``SELECT 1 ... WHERE jti = ?``). The state holds revoked jtis
only (no subject, session or key rules). PostgreSQL (a throwaway server this module starts,
:mod:`bench._postgres`) holds the same jtis in an indexed table, looked up with a prepared
``SELECT 1 ... WHERE jti = $1`` over one persistent loopback TCP connection, end to end and
directly as Redis is. Where PostgreSQL cannot be started its cells are NaN and
``postgres_note`` says why; the run goes on.
"""

from __future__ import annotations

import contextlib
import gc
import sqlite3
import statistics
import tempfile
import time
import timeit
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import jwt
import redis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bench._common import SECRET, fill, median_us, settings
from bench._postgres import PostgresUnavailableError, RevokedJtis, postgres_server
from consumer_sdk import ConsumerSettings, Revocast
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
    direct_us: float = 0.0
    """Revocast's extra work measured directly (decode stubbed; see the module docstring)."""
    cached_us: float = 0.0
    """Median ``verify`` of an already-cached token (``verify_cache_size`` set)."""
    redis_direct_us: float = 0.0
    """The Redis ``EXISTS`` measured the direct way (stubbed decode + EXISTS, minus stub)."""
    postgres_us: float = float("nan")
    """Median bare decode + PostgreSQL lookup; NaN when PostgreSQL was not available."""
    postgres_best_us: float = float("nan")
    postgres_direct_us: float = float("nan")
    """The PostgreSQL lookup measured the direct way, as :attr:`redis_direct_us`."""
    postgres_note: str = ""
    """Why the PostgreSQL cells are empty (it could not be found or started)."""

    @property
    def revocast_added_us(self) -> float:
        """End to end: fastest Revocast round minus fastest bare round (noise-dominated)."""
        return self.best[1] - self.best[0]

    @property
    def direct_ratio(self) -> float:
        """(bare + Revocast's directly measured work) / bare, medians."""
        return (self.bare_us + self.direct_us) / self.bare_us

    @property
    def cached_ratio(self) -> float:
        """A cached hit over bare PyJWT, medians."""
        return self.cached_us / self.bare_us

    @property
    def redis_added_us(self) -> float:
        return self.best[2] - self.best[0]

    @property
    def sqlite_added_us(self) -> float:
        return self.best[3] - self.best[0]

    @property
    def postgres_added_us(self) -> float:
        return self.postgres_best_us - self.best[0]

    @property
    def postgres_vs_revocast(self) -> float:
        """As :attr:`redis_vs_revocast`, for the PostgreSQL lookup (NaN without it)."""
        return self.postgres_direct_us / max(self.direct_us, self.check_us, 1e-3)

    @property
    def ratio(self) -> float:
        """Revocast over bare PyJWT, fastest rounds."""
        return self.best[1] / self.best[0]

    @property
    def redis_vs_revocast(self) -> float:
        """How many times more the Redis lookup adds than Revocast's work, both measured
        directly (stubbed decode; the end-to-end Redis figure swings with the bare decode)."""
        return self.redis_direct_us / max(self.direct_us, self.check_us, 1e-3)


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
        self._pyjwt = jwt.PyJWT(_OPTIONS)
        self._algorithms = [alg]
        s = settings(algorithms=(alg,), jwt_keys={"k1": material})
        self.src = InMemorySource()
        self.rc = Revocast(s, source=self.src)
        self.src.set_ready()
        # Same state, for the cached-hit and the stubbed-decode measurements.
        self.cached = _ready(replace(s, verify_cache_size=1024))
        self.stubbed = _ready(s)
        self.cached.state = self.stubbed.state = self.rc.state
        self._decoded = self._pyjwt.decode_complete(self.token, public, algorithms=[alg])
        self.stubbed._verifier._decode_complete = self.stub  # type: ignore[assignment]

    def bare(self) -> dict[str, Any]:
        return self._pyjwt.decode_complete(self.token, self.public, algorithms=self._algorithms)

    def stub(
        self, token: str | bytes, key: Any, algorithms: Any = None, **_: Any
    ) -> dict[str, Any]:
        """What ``decode_complete`` returns, without the work: fresh dicts and fresh strings
        (their hashes not yet cached, as after JSON parsing); ``str`` encoded as PyJWT does."""
        if isinstance(token, str):
            token = token.encode()
        payload = self._decoded["payload"].copy()
        for name in ("jti", "sub", "sid"):
            value = payload[name]
            payload[name] = value[:1] + value[1:]
        return {"header": self._decoded["header"].copy(), "payload": payload, "signature": b""}

    def stub_alone(self) -> dict[str, Any]:
        return self.stub(self.token, self.public, algorithms=self._algorithms)

    def stub_check(self) -> object:
        return self.rc.state.check(self.stub_alone()["payload"], "k1")

    def close(self) -> None:
        for rc in (self.rc, self.cached, self.stubbed):
            rc.close()


def _ready(s: ConsumerSettings) -> Revocast:
    src = InMemorySource()
    rc = Revocast(s, source=src)
    src.set_ready()
    return rc


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
    with contextlib.ExitStack() as stack:
        pg: RevokedJtis | None = None
        note = ""
        try:
            pg = RevokedJtis(stack.enter_context(postgres_server()))
        except PostgresUnavailableError as exc:
            note = str(exc)
            print(f"PostgreSQL column not measured: {note}", flush=True)
        return _run(redis_client, pg, note, algs, sizes, quick)


def _run(
    redis_client: redis.Redis,
    pg: RevokedJtis | None,
    note: str,
    algs: list[_Alg],
    sizes: Sequence[int],
    quick: bool,
) -> list[RequestRow]:
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
                if pg is not None:
                    pg.fill(filled, size)
                filled = size
                gc.collect()
                for a in algs:
                    row = _measure(a, size, redis_client, db, pg, quick)
                    rows.append(replace(row, postgres_note=note))
                    print(format_row(rows[-1]), flush=True)
        finally:
            db.close()
            redis_client.flushdb()
            for a in algs:
                a.close()
    return rows


def _paired_us(fn: Callable[[], object], base: Callable[[], object], number: int) -> float:
    """One round of the direct measure: ``fn`` minus ``base``, back to back, µs per call."""
    a = timeit.timeit(fn, number=number)
    b = timeit.timeit(base, number=number)
    return (a - b) / number * 1e6


def _measure(
    a: _Alg,
    size: int,
    client: redis.Redis,
    db: sqlite3.Connection,
    pg: RevokedJtis | None,
    quick: bool,
) -> RequestRow:
    rc, cached, stubbed, token, bare = a.rc, a.cached, a.stubbed, a.token, a.bare
    query = "SELECT 1 FROM revoked WHERE jti = ?"

    def with_redis() -> object:
        claims = bare()["payload"]
        if client.exists(f"revoked:{claims['jti']}"):
            raise jwt.InvalidTokenError("revoked")
        return claims

    def with_sqlite() -> object:
        claims = bare()["payload"]
        if db.execute(query, (claims["jti"],)).fetchone() is not None:
            raise jwt.InvalidTokenError("revoked")
        return claims

    def with_postgres() -> object:
        claims = bare()["payload"]
        if pg is not None and pg.is_revoked(claims["jti"]):
            raise jwt.InvalidTokenError("revoked")
        return claims

    variants: list[Callable[[], object]] = [
        bare,
        lambda: rc.verify(token),
        with_redis,
        with_sqlite,
        lambda: cached.verify(token),
    ]
    if pg is not None:
        variants.append(with_postgres)
    for fn in variants:  # warm up; a token revoked somewhere would make this a different test
        for _ in range(50):
            fn()
    assert cached._verifier.cache is not None
    assert len(cached._verifier.cache) == 1
    slow = a.alg != "HS256"
    number = (100 if slow else 300) if quick else (300 if slow else 1000)
    repeat = 11 if quick else 31
    direct_number, direct_pairs = 200, (8 if quick else 12)

    def ours_stubbed() -> object:
        return stubbed.verify(token)

    def redis_stubbed() -> object:
        claims = a.stub_alone()["payload"]
        if client.exists(f"revoked:{claims['jti']}"):
            raise jwt.InvalidTokenError("revoked")
        return claims

    def postgres_stubbed() -> object:
        claims = a.stub_alone()["payload"]
        if pg is not None and pg.is_revoked(claims["jti"]):
            raise jwt.InvalidTokenError("revoked")
        return claims

    # Every round times each variant once, in alternating order, then a few back-to-back
    # pairs of the direct measure. Medians are what a request pays on this machine; the
    # end-to-end added cost compares the fastest rounds (other processes only ever add time).
    samples: list[list[float]] = [[] for _ in variants]
    direct: list[float] = []
    check: list[float] = []
    redis_direct: list[float] = []
    postgres_direct: list[float] = []
    for k in range(repeat):
        order = range(len(variants)) if k % 2 == 0 else reversed(range(len(variants)))
        for i in order:
            samples[i].append(median_us(variants[i], number, 1))
        for _ in range(direct_pairs):
            direct.append(_paired_us(ours_stubbed, a.stub_alone, direct_number))
            check.append(_paired_us(a.stub_check, a.stub_alone, direct_number))
        for _ in range(3):
            redis_direct.append(_paired_us(redis_stubbed, a.stub_alone, 10))
            if pg is not None:
                postgres_direct.append(_paired_us(postgres_stubbed, a.stub_alone, 10))
    bare_m, ours_m, redis_m, sqlite_m, cached_m = (statistics.median(x) for x in samples[:5])
    bare_b, ours_b, redis_b, sqlite_b, _ = (min(x) for x in samples[:5])
    nan = float("nan")
    best = (bare_b, ours_b, redis_b, sqlite_b)
    return RequestRow(
        a.alg,
        size,
        bare_m,
        ours_m,
        redis_m,
        sqlite_m,
        statistics.median(check),
        best,
        direct_us=statistics.median(direct),
        cached_us=cached_m,
        redis_direct_us=statistics.median(redis_direct),
        postgres_us=statistics.median(samples[5]) if pg is not None else nan,
        postgres_best_us=min(samples[5]) if pg is not None else nan,
        postgres_direct_us=statistics.median(postgres_direct) if pg is not None else nan,
    )


HEADER = (
    f"{'alg':<6} {'entries':>9} {'bare':>7} {'+Revocast':>9} {'e2e+':>6} {'ratio':>6} "
    f"{'direct+':>7} {'check()':>7} {'cached':>7} | {'+Redis':>7} {'added':>6} {'direct':>6} | "
    f"{'+SQLite':>7} {'added':>6} | {'+PgSQL':>7} {'added':>6} {'direct':>6} | "
    f"{'Redis/Revocast added':>20} {'PgSQL/Revocast':>14}   (µs per verification)"
)


def format_row(r: RequestRow) -> str:
    return (
        f"{r.algorithm:<6} {r.entries:>9,} {r.bare_us:>7.1f} {r.revocast_us:>9.1f} "
        f"{r.revocast_added_us:>+6.2f} {r.ratio:>6.3f} {r.direct_us:>7.2f} {r.check_us:>7.2f} "
        f"{r.cached_us:>7.1f} | {r.redis_us:>7.1f} {r.redis_added_us:>6.1f} "
        f"{r.redis_direct_us:>6.1f} | "
        f"{r.sqlite_us:>7.1f} {r.sqlite_added_us:>6.1f} | "
        f"{r.postgres_us:>7.1f} {r.postgres_added_us:>6.1f} {r.postgres_direct_us:>6.1f} | "
        f"{r.redis_vs_revocast:>19.0f}x {r.postgres_vs_revocast:>13.0f}x"
    )
