"""Soak: 10k verifications/s and 1k revocations/s in one process, for minutes.

    python -m bench.soak [--seconds 180] [--verify-rate 10000] [--revoke-rate 1000]
                         [--lifetime 60] [--out soak.json]

Everything stays on loopback: the broker is ``$KAFKA_BOOTSTRAP_SERVERS`` when it points at
this host, else a :class:`~revocast.localkafka.LocalKafkaBroker` started for the run. A
publisher thread sends signed ``token.revoked`` events through :class:`producer.Publisher`
(direct mode, batches of a tenth of a second); the main thread verifies tokens against the
SDK at the target rate, a tenth of them revoked ones. Revocations live ``--lifetime``
seconds, far less than the run, so entries expire during it and memory must level off.

Every 10 s it prints one row: rates reached, propagation lag (publish to applied, from a
revocation listener), Kafka lag, jti entries, RSS, Python's allocated blocks, GC pauses
(``gc.callbacks``), revoked tokens accepted while their event was still in flight
(``flight``: the propagation window) and revoked tokens accepted after the SDK had applied
their revocation (``bad``: must stay 0). The summary compares memory in the second and last thirds.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt

from bench._common import EVENT_KEY, SECRET, percentile, settings, temp_topic
from consumer_sdk import Revocast, TokenRevokedError
from producer import Publisher, PublisherSettings
from revocation_events import Event, KafkaSettings, TokenRevoked

__all__ = ["Window", "main", "soak"]

WINDOW_S = 10.0
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Window:
    """What one 10-second window measured."""

    t: float
    verifies_per_s: float = 0.0
    revocations_per_s: float = 0.0
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    kafka_lag: int = 0
    jti_entries: int = 0
    rss_mb: float = 0.0
    blocks: int = 0
    gc_pauses: int = 0
    gc_max_ms: float = 0.0
    gc_total_ms: float = 0.0
    in_flight_accepted: int = 0
    revoked_accepted: int = 0


@dataclass
class _Counters:
    verified: int = 0
    published: int = 0
    in_flight_accepted: int = 0
    revoked_accepted: int = 0
    applied: set[str] = field(default_factory=set)
    lags_ms: list[float] = field(default_factory=list)
    gc_ms: list[float] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[int, int, int, int, list[float], list[float]]:
        with self.lock:
            out = (
                self.verified,
                self.published,
                self.in_flight_accepted,
                self.revoked_accepted,
                self.lags_ms,
                self.gc_ms,
            )
            self.verified = self.published = self.in_flight_accepted = 0
            self.revoked_accepted = 0
            self.lags_ms, self.gc_ms = [], []
        return out


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # pragma: no cover


@contextmanager
def _gc_timer(counters: _Counters) -> Iterator[None]:
    started: list[float] = []

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pause = (time.perf_counter() - started.pop()) * 1000
            with counters.lock:
                counters.gc_ms.append(pause)

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


def _token(jti: str, lifetime: float) -> str:
    now = int(time.time())
    claims = {"sub": f"user-{jti}", "jti": jti, "iat": now, "exp": now + int(lifetime)}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})


def _sampled(jti: str) -> bool:
    """One revocation in ten also gets a token that the verify loop tries."""
    return jti.endswith("0")


def _publish(
    publisher: Publisher,
    rate: float,
    lifetime: float,
    until: float,
    revoked: deque[tuple[str, str]],
    counters: _Counters,
    stop: threading.Event,
) -> None:
    batch = max(1, int(rate / 10))
    n = 0
    next_at = time.monotonic()
    while not stop.is_set() and time.monotonic() < until:
        expires = datetime.now(UTC) + timedelta(seconds=lifetime)
        jtis = [f"soak-{n + i}" for i in range(batch)]
        n += batch
        publisher.publish_many(
            TokenRevoked(issuer="soak", jti=jti, expires_at=expires) for jti in jtis
        )
        for jti in filter(_sampled, jtis):
            if len(revoked) == revoked.maxlen:
                with counters.lock:  # keep the applied set as small as the sample
                    counters.applied.discard(revoked[0][0])
            revoked.append((jti, _token(jti, lifetime)))
        with counters.lock:
            counters.published += batch
        next_at += batch / rate
        stop.wait(max(0.0, next_at - time.monotonic()))


def soak(
    bootstrap: str,
    *,
    seconds: float,
    verify_rate: float,
    revoke_rate: float,
    lifetime: float,
) -> list[Window]:
    """Run the soak against ``bootstrap``; return one :class:`Window` per 10 s."""
    counters = _Counters()
    windows: list[Window] = []
    with temp_topic(bootstrap, "soak") as kafka:
        rc = Revocast(settings(kafka=kafka, max_token_lifetime=lifetime, expire_interval=2.0))

        def on_event(event: Event) -> None:
            lag = (time.time() - event.occurred_at.timestamp()) * 1000
            with counters.lock:
                counters.lags_ms.append(lag)
                if isinstance(event, TokenRevoked) and _sampled(event.jti):
                    counters.applied.add(event.jti)

        rc.add_revocation_listener(on_event)
        if not rc.wait_until_ready(60):
            raise RuntimeError("the SDK did not become ready")
        publisher = Publisher(_publisher_settings(kafka, lifetime))
        pool = [_token(uuid.uuid4().hex, seconds + 600) for _ in range(1000)]
        revoked: deque[tuple[str, str]] = deque(maxlen=2000)
        stop = threading.Event()
        start = time.monotonic()
        until = start + seconds
        sender = threading.Thread(
            target=_publish,
            args=(publisher, revoke_rate, lifetime, until, revoked, counters, stop),
            name="soak-publisher",
            daemon=True,
        )
        try:
            with _gc_timer(counters):
                sender.start()
                windows = _verify_loop(rc, pool, revoked, counters, start, until, verify_rate)
        finally:
            stop.set()
            sender.join(30)
            publisher.close(timeout=5)
            rc.close()
    return windows


def _verify_loop(
    rc: Revocast,
    pool: list[str],
    revoked: deque[tuple[str, str]],
    counters: _Counters,
    start: float,
    until: float,
    rate: float,
) -> list[Window]:
    windows: list[Window] = []
    tick = 0.01
    per_tick = max(1, int(rate * tick))
    next_tick = start
    next_window = start + WINDOW_S
    i = 0
    while (now := time.monotonic()) < until:
        in_flight = wrongly = 0
        for _ in range(per_tick):
            i += 1
            if i % 10 == 0 and revoked:
                jti, tok = revoked[i % len(revoked)]
                try:
                    rc.verify(tok)
                except (TokenRevokedError, jwt.ExpiredSignatureError):
                    continue
                # Accepted: fine while the event is in flight, a bug once it was applied.
                if jti in counters.applied:
                    wrongly += 1
                else:
                    in_flight += 1
            else:
                rc.verify(pool[i % len(pool)])
        with counters.lock:
            counters.verified += per_tick
            counters.in_flight_accepted += in_flight
            counters.revoked_accepted += wrongly
        if now >= next_window:
            windows.append(_window(rc, counters, now - start, now - next_window + WINDOW_S))
            _print_row(windows[-1])
            next_window += WINDOW_S
        next_tick += tick
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return windows


def _window(rc: Revocast, counters: _Counters, t: float, span: float) -> Window:
    verified, published, in_flight, wrongly, lags, pauses = counters.take()
    stats = rc.stats()
    return Window(
        t=round(t, 1),
        verifies_per_s=round(verified / span),
        revocations_per_s=round(published / span),
        lag_p50_ms=round(percentile(lags, 0.5), 1) if lags else 0.0,
        lag_p99_ms=round(percentile(lags, 0.99), 1) if lags else 0.0,
        lag_max_ms=round(max(lags), 1) if lags else 0.0,
        kafka_lag=sum(stats.get("lag", {}).values()),
        jti_entries=stats["entries"]["jti"],
        rss_mb=round(_rss_mb(), 1),
        blocks=sys.getallocatedblocks(),
        gc_pauses=len(pauses),
        gc_max_ms=round(max(pauses), 2) if pauses else 0.0,
        gc_total_ms=round(sum(pauses), 1),
        in_flight_accepted=in_flight,
        revoked_accepted=wrongly,
    )


def _publisher_settings(kafka: KafkaSettings, lifetime: float) -> PublisherSettings:
    return PublisherSettings(
        issuer="soak",
        kafka=kafka,
        signing_key=EVENT_KEY,
        delivery="direct",
        max_token_lifetime=lifetime,
    )


_COLUMNS = (
    ("t", "t s", 6),
    ("verifies_per_s", "verify/s", 9),
    ("revocations_per_s", "revoke/s", 9),
    ("lag_p50_ms", "lag p50", 8),
    ("lag_p99_ms", "lag p99", 8),
    ("lag_max_ms", "lag max", 8),
    ("kafka_lag", "k-lag", 6),
    ("jti_entries", "jti", 7),
    ("rss_mb", "RSS MB", 7),
    ("blocks", "blocks", 9),
    ("gc_pauses", "GCs", 5),
    ("gc_max_ms", "GC max", 7),
    ("in_flight_accepted", "flight", 7),
    ("revoked_accepted", "bad", 4),
)


def _print_row(w: Window) -> None:
    values = asdict(w)
    print(" ".join(f"{values[key]!s:>{width}}" for key, _, width in _COLUMNS), flush=True)


def summary(windows: list[Window]) -> dict[str, Any]:
    """Totals, and memory in the second third of the run against the last third."""
    third = max(1, len(windows) // 3)
    middle, last = windows[third : 2 * third] or windows, windows[-third:]

    def mean(rows: list[Window], attr: str) -> float:
        return sum(float(getattr(r, attr)) for r in rows) / len(rows)

    return {
        "windows": len(windows),
        "verifies_per_s": round(mean(windows, "verifies_per_s")),
        "revocations_per_s": round(mean(windows, "revocations_per_s")),
        "lag_p99_ms_worst": max(w.lag_p99_ms for w in windows),
        "lag_max_ms": max(w.lag_max_ms for w in windows),
        "rss_mb_middle": round(mean(middle, "rss_mb"), 1),
        "rss_mb_last": round(mean(last, "rss_mb"), 1),
        "blocks_middle": round(mean(middle, "blocks")),
        "blocks_last": round(mean(last, "blocks")),
        "jti_entries_max": max(w.jti_entries for w in windows),
        "jti_entries_last": windows[-1].jti_entries,
        "gc_pauses": sum(w.gc_pauses for w in windows),
        "gc_max_ms": max(w.gc_max_ms for w in windows),
        "accepted_in_flight": sum(w.in_flight_accepted for w in windows),
        "revoked_accepted_after_applied": sum(w.revoked_accepted for w in windows),
    }


def _loopback(bootstrap: str) -> bool:
    return all(server.rsplit(":", 1)[0] in _LOOPBACK for server in bootstrap.split(","))


@contextmanager
def _broker() -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        if not _loopback(existing):
            raise SystemExit(f"bench.soak runs on loopback only; got {existing}")
        yield existing
        return
    from revocast.localkafka import LocalKafkaBroker

    with LocalKafkaBroker(heap="768m") as broker:
        yield broker.bootstrap_servers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--verify-rate", type=float, default=10_000.0)
    parser.add_argument("--revoke-rate", type=float, default=1_000.0)
    parser.add_argument("--lifetime", type=float, default=60.0, help="revocation lifetime, s")
    parser.add_argument("--out", type=Path, default=None, help="write windows + summary JSON")
    args = parser.parse_args(argv)
    print(" ".join(f"{label:>{width}}" for _, label, width in _COLUMNS))
    with _broker() as bootstrap:
        windows = soak(
            bootstrap,
            seconds=args.seconds,
            verify_rate=args.verify_rate,
            revoke_rate=args.revoke_rate,
            lifetime=args.lifetime,
        )
    result = summary(windows)
    print(json.dumps(result, indent=2))
    if args.out is not None:
        args.out.write_text(
            json.dumps({"windows": [asdict(w) for w in windows], "summary": result}, indent=2)
        )
    return 1 if result["revoked_accepted_after_applied"] else 0


if __name__ == "__main__":
    sys.exit(main())
