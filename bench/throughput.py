"""Throughput under load: one process verifies from 4 threads while revocations stream in.

The publisher runs in its own process (a 'spawn' child, paced like the propagation bench) so
that only the SDK's sync thread competes with the verifying threads for this process's GIL.
Lag is sampled every 0.25 s as the topic's end offsets (read by a separate consumer) minus
the SDK's positions from :meth:`Revocast.stats`; bounded means it returns to 0 once the
publisher stops and does not grow over the run (see :attr:`ThroughputResult.bounded`).

The idle rate is measured twice, before the publisher starts and after the lag drained, and
the loaded rate is compared with their mean: a shared machine's speed drifts over a run, and
one baseline taken before would put that drift into the ratio. The loaded rate is what this
process gets while the publisher process and the broker also want the machine's cores, not
only the cost of the SDK's sync thread.
"""

from __future__ import annotations

import math
import multiprocessing
import threading
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

from bench._common import EVENT_KEY, settings, temp_topic
from bench.propagation import publish_paced, token_for
from consumer_sdk import Revocast
from producer import Publisher, PublisherSettings
from revocation_events import KafkaSettings

__all__ = ["ThroughputResult", "check_applied", "format_result", "run"]

THREADS = 4


@dataclass(frozen=True)
class ThroughputResult:
    threads: int
    seconds: float
    idle_per_s: float
    loaded_per_s: float
    target_rate: int
    achieved_rate: float
    applied: int
    published: int
    lags: tuple[int, ...]
    final_lag: int
    drain_s: float
    idle_after_per_s: float = float("nan")
    """The idle rate again, once the lag drained."""

    @property
    def baseline_per_s(self) -> float:
        """The idle rate the loaded one is compared with: the mean of before and after."""
        if math.isnan(self.idle_after_per_s):
            return self.idle_per_s
        return (self.idle_per_s + self.idle_after_per_s) / 2

    @property
    def ratio(self) -> float:
        return self.loaded_per_s / self.baseline_per_s

    @property
    def max_lag(self) -> int:
        return max(self.lags, default=0)

    @property
    def bounded(self) -> bool:
        """Lag does not grow during the run (last third vs first third, with a quarter second
        of events as slack) and drains to 0 once the publisher stops; judged only on a run
        where lag was sampled and every published revocation was applied (a skipped event
        also moves the SDK's position, so lag alone cannot tell)."""
        if not self.lags or self.applied != self.published:
            return False
        first, last = _third(self.lags, 0), _third(self.lags, -1)
        return self.final_lag == 0 and last <= 1.5 * first + self.target_rate / 4


def _publisher_main(
    conn: Connection, bootstrap: str, topic: str, rate: int, seconds: float
) -> None:
    kafka = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    publisher_settings = PublisherSettings(
        issuer="bench", kafka=kafka, signing_key=EVENT_KEY, delivery="direct"
    )
    exp = datetime.fromtimestamp(time.time() + 3600, UTC)
    with Publisher(publisher_settings) as publisher:
        publisher.revoke_token("warm-up", expires_at=exp)
        conn.send("ready")
        conn.recv()
        published = publish_paced(publisher, "load", round(rate * seconds), rate, exp)
    conn.send(published.achieved_rate)
    conn.close()


def _verify_for(rc: Revocast, token: str, seconds: float) -> float:
    """Verifications per second over ``THREADS`` threads for ``seconds``."""
    counts = [0] * THREADS
    stop = threading.Event()

    def work(k: int) -> None:
        n = 0
        while not stop.is_set():
            for _ in range(100):
                rc.verify(token)
            n += 100
        counts[k] = n

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(THREADS)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - start)


def run(bootstrap: str, rate: int, seconds: float) -> ThroughputResult:
    with temp_topic(bootstrap, "bench-throughput") as kafka:
        rc = Revocast(settings(kafka=kafka))
        watcher = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
        try:
            if not rc.wait_until_ready(120):
                raise RuntimeError("SDK not ready")
            token = token_for("not-revoked", int(time.time()))
            _verify_for(rc, token, 1.0)  # warm-up: first calls, threads, the SDK settling
            idle = _verify_for(rc, token, max(2.0, seconds / 3))

            ctx = multiprocessing.get_context("spawn")
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_publisher_main,
                args=(child, bootstrap, kafka.topic, rate, seconds),
                name="bench-publisher",
                daemon=True,
            )
            proc.start()
            child.close()
            if not parent.poll(120) or parent.recv() != "ready":
                raise RuntimeError("publisher process did not start")
            tps = [TopicPartition(kafka.topic, p) for p in range(3)]
            lags: list[int] = []
            sampler_error: list[BaseException] = []
            done = threading.Event()

            def lag() -> int:
                ends = watcher.end_offsets(tps, timeout_ms=10_000)
                positions = rc.stats()["positions"]
                return sum(max(0, end - positions.get(tp.partition, 0)) for tp, end in ends.items())

            def sample() -> None:
                try:
                    while not done.is_set():
                        lags.append(lag())
                        done.wait(0.25)
                except BaseException as exc:  # re-raised below: no samples is no result
                    sampler_error.append(exc)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            parent.send("go")
            loaded = _verify_for(rc, token, seconds)
            if not parent.poll(seconds + 120):
                raise RuntimeError("publisher process did not finish")
            achieved: float = parent.recv()
            proc.join(30)
            done.set()
            sampler.join()
            if sampler_error:
                raise RuntimeError("lag sampling failed") from sampler_error[0]
            drain_start = time.perf_counter()
            final = lag()
            while final and time.perf_counter() - drain_start < 30:
                time.sleep(0.05)
                final = lag()
            drain_s = time.perf_counter() - drain_start
            applied = rc.stats()["applied"].get("token.revoked", 0)
            idle_after = _verify_for(rc, token, max(2.0, seconds / 3))
        finally:
            watcher.close()
            rc.close()
    return ThroughputResult(
        threads=THREADS,
        seconds=seconds,
        idle_per_s=idle,
        loaded_per_s=loaded,
        target_rate=rate,
        achieved_rate=achieved,
        applied=applied,
        published=round(rate * seconds) + 1,
        lags=tuple(lags),
        final_lag=final,
        drain_s=drain_s,
        idle_after_per_s=idle_after,
    )


def check_applied(r: ThroughputResult) -> None:
    """Raise if the SDK did not apply every published revocation: lost, not slow."""
    if r.applied != r.published:
        raise RuntimeError(f"{r.applied:,} of {r.published:,} published revocations applied")


def format_result(r: ThroughputResult) -> str:
    return (
        f"{r.threads} threads: {r.idle_per_s:,.0f} / {r.idle_after_per_s:,.0f} verifications/s "
        f"idle before / after, {r.loaded_per_s:,.0f}/s while {r.achieved_rate:,.0f} "
        f"revocations/s arrive (target {r.target_rate:,}/s; ratio {r.ratio:.2f}); "
        f"applied {r.applied:,}/{r.published:,}; lag max {r.max_lag:,} events "
        f"(first/last third {_third(r.lags, 0):,}/{_third(r.lags, -1):,}), "
        f"final {r.final_lag} after {r.drain_s:.2f}s -> "
        + ("bounded" if r.bounded else "NOT bounded" + _why_not(r))
    )


def _why_not(r: ThroughputResult) -> str:
    if not r.lags:
        return " (no lag samples)"
    if r.applied != r.published:
        return f" ({r.applied:,} of {r.published:,} revocations applied)"
    return " (grows)" if r.final_lag == 0 else " (does not drain)"


def _third(lags: tuple[int, ...], which: int) -> int:
    third = max(1, len(lags) // 3)
    part = lags[:third] if which == 0 else lags[-third:]
    return max(part, default=0)
