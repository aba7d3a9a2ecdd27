"""Soak: 10k verifications/s and 1k revocations/s against one SDK process, for minutes.

    python -m bench.soak [--seconds 180] [--verify-rate 10000] [--revoke-rate 1000]
                         [--sessions 20000] [--verify-cache SIZE] [--gc-freeze]
                         [--lifetime 60] [--publisher process|thread] [--out soak.json]

Everything stays on loopback: the broker is ``$KAFKA_BOOTSTRAP_SERVERS`` when it points at
this host, else a :class:`~revocast.localkafka.LocalKafkaBroker` started for the run. The run
is bounded by ``--seconds``.

**What runs where.** The SDK under test (one :class:`Revocast`, its sync thread) and the
verify loop share the measured process. The revocations come from a :class:`Publisher`
(direct mode, acks=all, batches every 0.1 s) in a *separate process* by default, as the
identity service would be: in a thread it would compete with the SDK for the GIL and its
producer's memory would be counted as the SDK's (``--publisher thread`` keeps the old
arrangement, for comparison).

**Token pool.** ``--sessions`` live sessions, each with its own token (HS256, minted before
the run, handed to ``verify`` as ``bytes`` as an ASGI header would be); every verification
picks one at random (a pre-drawn sequence: no RNG on the hot path). One revocation in ten
revokes a live session of this pool, oldest first, and a fresh session takes its place; the
other nine revoke jtis this service never sees, as revocations for other services' users
would. Nine verifications in ten go to live sessions; one in ten *probes* a session revoked
in the last 10 s, a token that was live (and, with ``--verify-cache``, cached) until then.
Revocations carry the token's ``exp`` (other jtis: now + ``--lifetime``), so entries expire
during the run and memory must level off.

**Correctness counters** (each verification is classified with what was known *before* it
began, so a race with the sync thread can only make a counter err towards 0, never invent
a failure): ``bad``: a probe accepted although the SDK had applied its revocation before
the call (must be 0, cache hit or not); ``flight``: a probe accepted while its revocation
was acknowledged by Kafka but not applied yet (the propagation window); ``wrong``: a live
session refused although its revocation had not been published (must be 0).

Every 10 s it prints one row: verifications per second and their latency (4 timed calls per
10 ms tick), revocations per second, propagation lag (event created -> applied), Kafka lag,
jti entries, cache entries and hit rate, RSS, Python's allocated blocks, GC pauses
(``gc.callbacks``: count, wall-clock p99 and max, and the max of the collecting thread's CPU
time, which a busy box does not inflate), the counters above and the load average. The
summary compares memory in the second and last thirds, gives its slope over the last half,
GC pauses by generation and the objects the collector scans. The exit status is 1 when
``bad`` or ``wrong`` is not 0.
``--verify-rate 0`` verifies as fast as it can (the maximum rate).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import multiprocessing
import os
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from bench._common import EVENT_KEY, SECRET, percentile, settings, temp_topic
from consumer_sdk import ConsumerSettings, Revocast, TokenRevokedError
from producer import Publisher, PublisherSettings
from revocation_events import Event, KafkaSettings, TokenRevoked

__all__ = ["SoakConfig", "Window", "main", "soak", "summary"]

WINDOW_S = 10.0
TICK_S = 0.01
POOL_SHARE = 10
"""One revocation in this many revokes a live session of the pool; one verification in this
many probes a recently revoked session."""
PROBE_SPAN_S = 10.0
"""Probes pick among the sessions revoked in the last this many seconds."""
TIMED_PER_TICK = 4
"""Verifications timed one by one in each tick (the latency percentiles)."""
_SLACK_S = 30
"""Added to every session token's exp: covers minting, start-up and a publisher behind."""
_LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_HAS_CACHE = "verify_cache_size" in {f.name for f in dataclasses.fields(ConsumerSettings)}


@dataclass(frozen=True)
class SoakConfig:
    """One soak run's parameters (see the module docstring)."""

    seconds: float = 180.0
    verify_rate: float = 10_000.0
    revoke_rate: float = 1_000.0
    lifetime: float = 60.0
    sessions: int = 20_000
    verify_cache: int = 0
    gc_freeze: bool = False
    publisher: str = "process"

    @property
    def pool_rate(self) -> float:
        """Live sessions revoked per second."""
        return self.revoke_rate / POOL_SHARE


@dataclass
class Window:
    """What one 10-second window measured."""

    t: float
    verifies_per_s: float = 0.0
    verify_p50_us: float = 0.0
    verify_p99_us: float = 0.0
    verify_max_ms: float = 0.0
    revocations_per_s: float = 0.0
    lag_p50_ms: float = 0.0
    lag_p99_ms: float = 0.0
    lag_max_ms: float = 0.0
    kafka_lag: int = 0
    jti_entries: int = 0
    cache_entries: int = 0
    cache_hit_pct: float = 0.0
    rss_mb: float = 0.0
    blocks: int = 0
    gc_pauses: int = 0
    gc_p99_ms: float = 0.0
    gc_max_ms: float = 0.0
    gc_cpu_max_ms: float = 0.0
    gc_total_ms: float = 0.0
    in_flight_accepted: int = 0
    revoked_accepted: int = 0
    wrong_refusals: int = 0
    expired: int = 0
    load1: float = 0.0


class _Shared:
    """Progress the publisher reports to the verify loop: plain shared memory, one writer."""

    def __init__(self, ctx: Any) -> None:
        self.total = ctx.Value("q", 0, lock=False)
        """Revocations acknowledged by Kafka."""
        self.pool = ctx.Value("q", 0, lock=False)
        """Live sessions revoked and acknowledged: sessions ``0 .. pool-1``."""
        self.sending = ctx.Value("q", 0, lock=False)
        """Live sessions whose revocation has been handed to Kafka (set before the send: the
        SDK may apply a record before its producer sees the ack)."""


# -- the token pool ----------------------------------------------------------------------


def _session_jti(k: int) -> str:
    return f"s-{k}"


def _session_exp(exp_base: int, pool_rate: float, k: int) -> int:
    """Session ``k``'s token expiry: ``--lifetime`` after it is due to be revoked (+ slack).
    The publisher gives its revocation the same ``expires_at``."""
    return exp_base + int(k / pool_rate)


def _mint(count: int, exp_base: int, pool_rate: float) -> list[bytes]:
    now = int(time.time())
    return [
        jwt.encode(
            {
                "sub": f"user-{k}",
                "jti": _session_jti(k),
                "iat": now,
                "exp": _session_exp(exp_base, pool_rate, k),
            },
            SECRET,
            algorithm="HS256",
            headers={"kid": "k1"},
        ).encode()
        for k in range(count)
    ]


# -- the publisher (own process by default) ------------------------------------------------


def _publisher_settings(kafka: KafkaSettings, lifetime: float) -> PublisherSettings:
    return PublisherSettings(
        issuer="soak",
        kafka=kafka,
        signing_key=EVENT_KEY,
        delivery="direct",
        max_token_lifetime=max(lifetime + _SLACK_S + 60, 3600.0),
    )


def _publish(
    bootstrap: str,
    topic: str,
    config: SoakConfig,
    exp_base: int,
    shared: _Shared,
    ready: Any,
    go: Any,
    stop: Any,
    start_wall: Any,
) -> None:
    """Publish ``revoke_rate`` revocations per second until ``seconds`` after ``go``."""
    kafka = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    with Publisher(_publisher_settings(kafka, config.lifetime)) as publisher:
        warm = datetime.fromtimestamp(time.time() + config.lifetime, UTC)
        publisher.publish(TokenRevoked(issuer="soak", jti="warm-up", expires_at=warm))
        ready.set()
        go.wait()
        batch = max(1, round(config.revoke_rate * 0.1))
        period = batch / config.revoke_rate
        until = start_wall.value + config.seconds
        next_at = time.time()
        n = pool = 0
        while not stop.is_set() and time.time() < until:
            now = time.time()
            other_exp = datetime.fromtimestamp(now + config.lifetime, UTC)
            events = []
            for _ in range(batch):
                if n % POOL_SHARE == 0:
                    exp = _session_exp(exp_base, config.pool_rate, pool)
                    events.append(
                        TokenRevoked(
                            issuer="soak",
                            jti=_session_jti(pool),
                            sub=f"user-{pool}",
                            expires_at=datetime.fromtimestamp(exp, UTC),
                        )
                    )
                    pool += 1
                else:
                    events.append(TokenRevoked(issuer="soak", jti=f"o-{n}", expires_at=other_exp))
                n += 1
            shared.sending.value = pool
            publisher.publish_many(events)
            shared.total.value = n
            shared.pool.value = pool  # after the acks: these are at least in flight
            next_at += period
            delay = next_at - time.time()
            if delay > 0:
                stop.wait(delay)


def _publisher_main(*args: Any) -> None:
    try:
        _publish(*args)
    except BaseException as exc:  # reported by the parent through the exit code
        print(f"soak publisher failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None


@dataclass
class _PublisherHandle:
    ready: Any
    go: Any
    stop: Any
    start_wall: Any
    alive: Callable[[], bool]
    join: Callable[[float], None]
    failed: Callable[[], bool]


def _start_publisher(
    bootstrap: str, topic: str, config: SoakConfig, exp_base: int, shared: _Shared, ctx: Any
) -> _PublisherHandle:
    start_wall = ctx.Value("d", 0.0, lock=False)
    if config.publisher == "process":
        ready, go, stop = ctx.Event(), ctx.Event(), ctx.Event()
        args = (bootstrap, topic, config, exp_base, shared, ready, go, stop, start_wall)
        proc = ctx.Process(target=_publisher_main, args=args, name="soak-publisher", daemon=True)
        proc.start()
        return _PublisherHandle(
            ready,
            go,
            stop,
            start_wall,
            proc.is_alive,
            proc.join,
            lambda: proc.exitcode not in (None, 0),
        )
    errors: list[BaseException] = []
    ready, go, stop = threading.Event(), threading.Event(), threading.Event()
    args = (bootstrap, topic, config, exp_base, shared, ready, go, stop, start_wall)

    def run() -> None:
        try:
            _publish(*args)
        except BaseException as exc:
            errors.append(exc)
            ready.set()
            raise

    thread = threading.Thread(target=run, name="soak-publisher", daemon=True)
    thread.start()
    return _PublisherHandle(
        ready, go, stop, start_wall, thread.is_alive, thread.join, lambda: bool(errors)
    )


# -- measurements --------------------------------------------------------------------------


class _Samples:
    """Appended by other threads (GC callback, revocation listener), swapped out per window:
    ``list.append`` and the swap are atomic under the GIL, so the hot path takes no lock."""

    def __init__(self) -> None:
        self.lags_ms: list[float] = []
        self.gc_ms: list[float] = []
        self.gc_cpu_ms: list[float] = []
        self.gc_by_gen: list[list[tuple[float, float]]] = [[], [], []]
        """Per generation: (wall ms, CPU ms) of each collection."""

    def take(self) -> tuple[list[float], list[float], list[float]]:
        lags, self.lags_ms = self.lags_ms, []
        pauses, self.gc_ms = self.gc_ms, []
        cpu, self.gc_cpu_ms = self.gc_cpu_ms, []
        return lags, pauses, cpu


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0  # pragma: no cover


@contextmanager
def _gc_timer(samples: _Samples) -> Iterator[None]:
    """Time every collection: wall clock (what a request waiting on the GIL sees, including
    the OS running something else meanwhile) and the collecting thread's CPU time (the work
    itself; on a busy box the better measure of what the heap costs)."""
    started = [0.0, 0.0]
    perf, cpu = time.perf_counter, time.thread_time

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0], started[1] = perf(), cpu()
        else:
            wall = (perf() - started[0]) * 1000
            used = (cpu() - started[1]) * 1000
            samples.gc_ms.append(wall)
            samples.gc_cpu_ms.append(used)
            samples.gc_by_gen[info["generation"]].append((wall, used))

    gc.callbacks.append(callback)
    try:
        yield
    finally:
        gc.callbacks.remove(callback)


def _cache_counts(rc: Revocast) -> tuple[int, int, int]:
    """(entries, hits, misses) of the SDK's verify cache, zeros when there is none."""
    cache = getattr(rc, "_cache", None)
    if cache is None:
        return 0, 0, 0
    return len(cache), int(getattr(cache, "hits", 0)), int(getattr(cache, "misses", 0))


# -- the run ---------------------------------------------------------------------------------


def soak(bootstrap: str, config: SoakConfig) -> tuple[list[Window], dict[str, Any]]:
    """Run the soak against ``bootstrap``; return one :class:`Window` per 10 s, and facts
    about the run (cache use, GC by generation, publisher mode)."""
    samples = _Samples()
    extra: dict[str, Any] = {}
    pool_total = config.sessions + math.ceil(config.pool_rate * (config.seconds + 1)) + 100
    applied = bytearray(pool_total)
    overrides: dict[str, Any] = {}
    if config.verify_cache and _HAS_CACHE:
        overrides["verify_cache_size"] = config.verify_cache
    extra["verify_cache_in_sdk"] = _HAS_CACHE
    with temp_topic(bootstrap, "soak") as kafka:
        rc = Revocast(
            settings(
                kafka=kafka,
                # The longest exp - iat minted (the last session of the pool): the SDK
                # refuses tokens that outlive max_token_lifetime.
                max_token_lifetime=config.lifetime
                + _SLACK_S
                + math.ceil(pool_total / config.pool_rate)
                + 1,
                expire_interval=2.0,
                **overrides,
            )
        )

        def on_event(event: Event) -> None:
            samples.lags_ms.append((time.time() - event.occurred_at.timestamp()) * 1000)
            jti = getattr(event, "jti", "")
            if jti[:2] == "s-":
                applied[int(jti[2:])] = 1

        rc.add_revocation_listener(on_event)
        try:
            if not rc.wait_until_ready(60):
                raise RuntimeError("the SDK did not become ready")
            exp_base = int(time.time()) + int(config.lifetime) + _SLACK_S
            started = time.perf_counter()
            tokens = _mint(pool_total, exp_base, config.pool_rate)
            extra["minted"] = pool_total
            extra["mint_s"] = round(time.perf_counter() - started, 1)
            ctx = multiprocessing.get_context("spawn")
            shared = _Shared(ctx)
            pub = _start_publisher(bootstrap, kafka.topic, config, exp_base, shared, ctx)
            if not pub.ready.wait(120) or pub.failed():
                raise RuntimeError("the soak publisher did not start")
            gc.collect()
            if config.gc_freeze:
                gc.freeze()
            extra["gc_frozen_objects"] = gc.get_freeze_count()
            extra["gc_tracked_objects_at_start"] = len(gc.get_objects())
            try:
                with _gc_timer(samples):
                    start = time.monotonic()
                    pub.start_wall.value = time.time()
                    pub.go.set()
                    windows = _verify_loop(rc, tokens, applied, shared, samples, config, start)
            finally:
                pub.stop.set()
                pub.join(30)
                extra["gc_tracked_objects_at_end"] = len(gc.get_objects())
                if config.gc_freeze:
                    gc.unfreeze()
            if pub.failed():
                raise RuntimeError("the soak publisher failed (see its error above)")
            entries, hits, misses = _cache_counts(rc)
            extra["cache"] = {"entries": entries, "hits": hits, "misses": misses}
            extra["gc_by_generation"] = {
                str(gen): {
                    "count": len(p),
                    "max_ms": round(max(w for w, _ in p), 2) if p else 0.0,
                    "cpu_max_ms": round(max(c for _, c in p), 2) if p else 0.0,
                }
                for gen, p in enumerate(samples.gc_by_gen)
            }
            extra["gc_all_ms"] = sorted(w for p in samples.gc_by_gen for w, _ in p)
            extra["gc_all_cpu_ms"] = sorted(c for p in samples.gc_by_gen for _, c in p)
        finally:
            rc.close()
    return windows, extra


def _verify_loop(
    rc: Revocast,
    tokens: list[bytes],
    applied: bytearray,
    shared: _Shared,
    samples: _Samples,
    config: SoakConfig,
    start: float,
) -> list[Window]:
    """The load generator. Kept to index arithmetic and counters: everything else (the RNG,
    minting, string formatting, locks) happens before the run or once per window."""
    verify = rc.verify
    monotonic, perf_ns = time.monotonic, time.perf_counter_ns
    pool, sending, total = shared.pool, shared.sending, shared.total
    rng = random.Random(20261123)
    mask = (1 << 16) - 1
    live_offsets = [rng.randrange(config.sessions) for _ in range(mask + 1)]
    probe_span = max(1, round(config.pool_rate * PROBE_SPAN_S))
    probe_offsets = [rng.randrange(probe_span) for _ in range(mask + 1)]
    paced = config.verify_rate > 0
    per_tick = max(POOL_SHARE, round(config.verify_rate * TICK_S)) if paced else 200
    probes_per_tick = per_tick // POOL_SHARE
    live_per_tick = per_tick - probes_per_tick - TIMED_PER_TICK
    until = start + config.seconds
    windows: list[Window] = []
    next_tick = start
    next_window = start + WINDOW_S
    window_start = start
    j = p = 0
    done = in_flight = bad = wrong = expired = 0
    latencies_ns: list[int] = []
    published_at_window = total.value
    _, hits0, misses0 = _cache_counts(rc)

    def refused_live(k: int) -> None:
        nonlocal wrong
        if k >= sending.value:  # re-read: it may have been revoked since the tick began
            wrong += 1

    while True:
        base = pool.value
        # A few timed calls, then the rest untimed.
        for _ in range(TIMED_PER_TICK):
            k = base + live_offsets[j & mask]
            j += 1
            t0 = perf_ns()
            try:
                verify(tokens[k])
            except TokenRevokedError:
                refused_live(k)
            except jwt.ExpiredSignatureError:
                expired += 1
            latencies_ns.append(perf_ns() - t0)
        for _ in range(live_per_tick):
            k = base + live_offsets[j & mask]
            j += 1
            try:
                verify(tokens[k])
            except TokenRevokedError:
                refused_live(k)
            except jwt.ExpiredSignatureError:
                expired += 1
        if base:
            span = min(base, probe_span)
            for _ in range(probes_per_tick):
                k = base - 1 - probe_offsets[p & mask] % span
                p += 1
                was_applied = applied[k]  # read before the call: see the module docstring
                try:
                    verify(tokens[k])
                except (TokenRevokedError, jwt.ExpiredSignatureError):
                    continue
                if was_applied:
                    bad += 1
                else:
                    in_flight += 1
        done += per_tick
        if (end := monotonic()) >= next_window or end >= until:
            span_s = end - window_start
            published = total.value
            entries, hits, misses = _cache_counts(rc)
            lookups = (hits - hits0) + (misses - misses0)
            windows.append(
                _window(
                    rc,
                    samples,
                    t=end - start,
                    verifies_per_s=done / span_s,
                    latencies_ns=latencies_ns,
                    revocations_per_s=(published - published_at_window) / span_s,
                    cache_entries=entries,
                    hit_pct=100.0 * (hits - hits0) / lookups if lookups else 0.0,
                    counters=(in_flight, bad, wrong, expired),
                )
            )
            _print_row(windows[-1])
            done = in_flight = bad = wrong = expired = 0
            latencies_ns = []
            published_at_window, hits0, misses0 = published, hits, misses
            if end >= until:
                break
            window_start = end
            next_window += WINDOW_S
        if paced:
            next_tick += TICK_S
            delay = next_tick - monotonic()
            if delay > 0:
                time.sleep(delay)
    return windows


def _window(
    rc: Revocast,
    samples: _Samples,
    *,
    t: float,
    verifies_per_s: float,
    latencies_ns: list[int],
    revocations_per_s: float,
    cache_entries: int,
    hit_pct: float,
    counters: tuple[int, int, int, int],
) -> Window:
    lags, pauses, cpu = samples.take()
    stats = rc.stats()
    in_flight, bad, wrong, expired = counters
    return Window(
        t=round(t, 1),
        verifies_per_s=round(verifies_per_s),
        verify_p50_us=round(percentile(latencies_ns, 0.5) / 1000, 1) if latencies_ns else 0.0,
        verify_p99_us=round(percentile(latencies_ns, 0.99) / 1000, 1) if latencies_ns else 0.0,
        verify_max_ms=round(max(latencies_ns) / 1e6, 2) if latencies_ns else 0.0,
        revocations_per_s=round(revocations_per_s),
        lag_p50_ms=round(percentile(lags, 0.5), 1) if lags else 0.0,
        lag_p99_ms=round(percentile(lags, 0.99), 1) if lags else 0.0,
        lag_max_ms=round(max(lags), 1) if lags else 0.0,
        kafka_lag=sum(stats.get("lag", {}).values()),
        jti_entries=stats["entries"]["jti"],
        cache_entries=cache_entries,
        cache_hit_pct=round(hit_pct, 1),
        rss_mb=round(_rss_mb(), 1),
        blocks=sys.getallocatedblocks(),
        gc_pauses=len(pauses),
        gc_p99_ms=round(percentile(pauses, 0.99), 2) if pauses else 0.0,
        gc_max_ms=round(max(pauses), 2) if pauses else 0.0,
        gc_cpu_max_ms=round(max(cpu), 2) if cpu else 0.0,
        gc_total_ms=round(sum(pauses), 1),
        in_flight_accepted=in_flight,
        revoked_accepted=bad,
        wrong_refusals=wrong,
        expired=expired,
        load1=round(os.getloadavg()[0], 2),
    )


# -- output ----------------------------------------------------------------------------------

_COLUMNS = (
    ("t", "t s", 6),
    ("verifies_per_s", "verify/s", 9),
    ("verify_p50_us", "p50 us", 7),
    ("verify_p99_us", "p99 us", 7),
    ("verify_max_ms", "max ms", 7),
    ("revocations_per_s", "revoke/s", 9),
    ("lag_p50_ms", "lag p50", 8),
    ("lag_p99_ms", "lag p99", 8),
    ("lag_max_ms", "lag max", 8),
    ("kafka_lag", "k-lag", 6),
    ("jti_entries", "jti", 7),
    ("cache_entries", "cache", 6),
    ("cache_hit_pct", "hit %", 6),
    ("rss_mb", "RSS MB", 7),
    ("blocks", "blocks", 8),
    ("gc_pauses", "GCs", 5),
    ("gc_p99_ms", "GC p99", 7),
    ("gc_max_ms", "GC max", 7),
    ("gc_cpu_max_ms", "GC cpu", 7),
    ("in_flight_accepted", "flight", 7),
    ("revoked_accepted", "bad", 4),
    ("wrong_refusals", "wrong", 6),
    ("load1", "load", 6),
)


def _header() -> str:
    return " ".join(f"{label:>{width}}" for _, label, width in _COLUMNS)


def _print_row(w: Window) -> None:
    values = asdict(w)
    print(" ".join(f"{values[key]!s:>{width}}" for key, _, width in _COLUMNS), flush=True)


def summary(
    windows: list[Window], config: SoakConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Totals; memory in the second third of the run against the last third, and its slope
    over the last half (MB per minute, least squares)."""
    extra = extra or {}
    if not windows:
        return {"windows": 0}
    third = max(1, len(windows) // 3)
    middle, last = windows[third : 2 * third] or windows, windows[-third:]
    half = windows[len(windows) // 2 :]

    def mean(rows: list[Window], attr: str) -> float:
        return sum(float(getattr(r, attr)) for r in rows) / len(rows)

    def slope_per_min(rows: list[Window], attr: str) -> float:
        if len(rows) < 2:
            return 0.0
        xs = [r.t for r in rows]
        ys = [float(getattr(r, attr)) for r in rows]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        var = sum((x - mx) ** 2 for x in xs)
        return 60 * sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var

    pauses: list[float] = extra.get("gc_all_ms", [])
    cpu: list[float] = extra.get("gc_all_cpu_ms", [])
    cache = extra.get("cache", {})
    lookups = cache.get("hits", 0) + cache.get("misses", 0)
    return {
        "config": asdict(config),
        "verify_cache_in_sdk": extra.get("verify_cache_in_sdk", _HAS_CACHE),
        "windows": len(windows),
        "verifies_per_s": round(mean(windows, "verifies_per_s")),
        "verifies_per_s_min": min(w.verifies_per_s for w in windows),
        "verify_p50_us": round(mean(windows, "verify_p50_us"), 1),
        "verify_p99_us_worst": max(w.verify_p99_us for w in windows),
        "verify_max_ms": max(w.verify_max_ms for w in windows),
        "revocations_per_s": round(mean(windows, "revocations_per_s")),
        "lag_p50_ms": round(mean(windows, "lag_p50_ms"), 1),
        "lag_p99_ms_worst": max(w.lag_p99_ms for w in windows),
        "lag_max_ms": max(w.lag_max_ms for w in windows),
        "rss_mb_first": windows[0].rss_mb,
        "rss_mb_middle": round(mean(middle, "rss_mb"), 1),
        "rss_mb_last": round(mean(last, "rss_mb"), 1),
        "rss_mb_per_min_last_half": round(slope_per_min(half, "rss_mb"), 2),
        "blocks_middle": round(mean(middle, "blocks")),
        "blocks_last": round(mean(last, "blocks")),
        "jti_entries_max": max(w.jti_entries for w in windows),
        "jti_entries_last": windows[-1].jti_entries,
        "cache_entries_last": windows[-1].cache_entries,
        "cache_hit_pct": round(100.0 * cache.get("hits", 0) / lookups, 1) if lookups else 0.0,
        "gc_pauses": len(pauses),
        "gc_p99_ms": round(percentile(pauses, 0.99), 2) if pauses else 0.0,
        "gc_max_ms": round(max(pauses), 2) if pauses else 0.0,
        "gc_cpu_p99_ms": round(percentile(cpu, 0.99), 2) if cpu else 0.0,
        "gc_cpu_max_ms": round(max(cpu), 2) if cpu else 0.0,
        "gc_by_generation": extra.get("gc_by_generation", {}),
        "gc_frozen_objects": extra.get("gc_frozen_objects", 0),
        "gc_tracked_objects_at_start": extra.get("gc_tracked_objects_at_start", 0),
        "gc_tracked_objects_at_end": extra.get("gc_tracked_objects_at_end", 0),
        "accepted_in_flight": sum(w.in_flight_accepted for w in windows),
        "revoked_accepted_after_applied": sum(w.revoked_accepted for w in windows),
        "live_refused_wrongly": sum(w.wrong_refusals for w in windows),
        "live_expired": sum(w.expired for w in windows),
        "load1_min": min(w.load1 for w in windows),
        "load1_max": max(w.load1 for w in windows),
        "minted_tokens": extra.get("minted", 0),
    }


def _print_summary(result: dict[str, Any]) -> None:
    c = result["config"]
    target = f"{c['verify_rate']:,.0f}/s target" if c["verify_rate"] else "max rate"
    cache = (
        f"verify cache {c['verify_cache']:,}"
        if c["verify_cache"] and result["verify_cache_in_sdk"]
        else "verify cache off"
        + (" (not in this SDK: --verify-cache ignored)" if c["verify_cache"] else "")
    )
    gens = ", ".join(
        f"gen{g} {v['count']} max {v['max_ms']} / {v['cpu_max_ms']}"
        for g, v in result["gc_by_generation"].items()
    )
    ok = result["revoked_accepted_after_applied"] == 0 and result["live_refused_wrongly"] == 0
    lines = [
        "",
        f"soak: {result['windows'] * WINDOW_S:.0f} s, {cache}, "
        f"gc.freeze {'on' if c['gc_freeze'] else 'off'}, publisher in its own "
        f"{'process' if c['publisher'] == 'process' else 'thread (same process)'}, "
        f"{c['sessions']:,} live sessions, "
        f"load average {result['load1_min']}-{result['load1_max']}",
        f"  verify       {target}: mean {result['verifies_per_s']:,}/s "
        f"(slowest window {result['verifies_per_s_min']:,}/s); latency p50 "
        f"{result['verify_p50_us']} us, p99 (worst window) {result['verify_p99_us_worst']} us, "
        f"max {result['verify_max_ms']} ms; cache hits {result['cache_hit_pct']} %",
        f"  revocations  {result['revocations_per_s']:,}/s; lag p50 {result['lag_p50_ms']} ms, "
        f"p99 (worst window) {result['lag_p99_ms_worst']} ms, max {result['lag_max_ms']} ms",
        f"  memory       RSS {result['rss_mb_first']} MB at 10 s, {result['rss_mb_middle']} MB "
        f"(2nd third), {result['rss_mb_last']} MB (last third), "
        f"{result['rss_mb_per_min_last_half']:+} MB/min over the last half; jti entries max "
        f"{result['jti_entries_max']:,}, last {result['jti_entries_last']:,}; "
        f"blocks {result['blocks_middle']:,} -> {result['blocks_last']:,}",
        f"  GC           {result['gc_pauses']:,} pauses, wall p99 {result['gc_p99_ms']} ms, "
        f"max {result['gc_max_ms']} ms; CPU p99 {result['gc_cpu_p99_ms']} ms, "
        f"max {result['gc_cpu_max_ms']} ms (wall / CPU ms: {gens});\n               "
        f"objects the collector scans: {result['gc_tracked_objects_at_start']:,} at start, "
        f"{result['gc_tracked_objects_at_end']:,} at the end "
        f"({result['gc_frozen_objects']:,} frozen)",
        "  correctness  revoked accepted after applied (bad) "
        f"{result['revoked_accepted_after_applied']}, "
        f"live refused wrongly {result['live_refused_wrongly']}, "
        f"revoked accepted in flight {result['accepted_in_flight']:,}: "
        + ("OK" if ok else "FAILED"),
    ]
    print("\n".join(lines), flush=True)


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
        prog="python -m bench.soak",
        description=(__doc__ or "").split("\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=180.0, help="length of the run")
    parser.add_argument(
        "--verify-rate", type=float, default=10_000.0, help="verifications/s; 0: as fast as it can"
    )
    parser.add_argument("--revoke-rate", type=float, default=1_000.0, help="revocations/s")
    parser.add_argument(
        "--lifetime", type=float, default=60.0, help="revocation lifetime (entries expire), s"
    )
    parser.add_argument("--sessions", type=int, default=20_000, help="live sessions (tokens)")
    parser.add_argument(
        "--verify-cache",
        type=int,
        default=0,
        metavar="SIZE",
        help="the SDK's verify_cache_size (0: off; ignored by an SDK without the setting)",
    )
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() after start-up (bootstrap objects)"
    )
    parser.add_argument(
        "--publisher",
        choices=("process", "thread"),
        default="process",
        help="where the revocations are published from",
    )
    parser.add_argument("--out", type=Path, default=None, help="write windows + summary JSON")
    args = parser.parse_args(argv)
    if args.seconds < WINDOW_S:
        parser.error(f"--seconds must be at least {WINDOW_S:g}")
    if args.revoke_rate < POOL_SHARE or args.sessions < 1 or args.verify_cache < 0:
        parser.error("--revoke-rate >= 10, --sessions >= 1 and --verify-cache >= 0 please")
    config = SoakConfig(
        seconds=args.seconds,
        verify_rate=args.verify_rate,
        revoke_rate=args.revoke_rate,
        lifetime=args.lifetime,
        sessions=args.sessions,
        verify_cache=args.verify_cache,
        gc_freeze=args.gc_freeze,
        publisher=args.publisher,
    )
    if config.verify_cache and not _HAS_CACHE:
        print("note: this SDK has no verify_cache_size; --verify-cache is ignored", flush=True)
    with _broker() as bootstrap:
        print(_header(), flush=True)
        windows, extra = soak(bootstrap, config)
    result = summary(windows, config, extra)
    _print_summary(result)
    if args.out is not None:
        args.out.write_text(
            json.dumps({"windows": [asdict(w) for w in windows], "summary": result}, indent=2)
            + "\n"
        )
        print(f"written to {args.out}")
    failed = result.get("revoked_accepted_after_applied") or result.get("live_refused_wrongly")
    return 1 if failed or not windows else 0


if __name__ == "__main__":
    sys.exit(main())
