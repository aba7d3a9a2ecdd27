"""Propagation: from ``publish()`` returning to the moment each consumer process rejects the token.

N consumer processes (``multiprocessing`` with the 'spawn' start method, so each is a fresh
interpreter with its own SDK, Kafka consumer and GIL) follow one fresh topic. The bench process
publishes ``TokenRevoked`` events through :class:`producer.Publisher` (``delivery="direct"``:
the call returns once the broker acknowledged) at a fixed rate, paced on a schedule.

Clock: ``time.monotonic_ns()`` everywhere. On Linux it reads ``CLOCK_MONOTONIC``, one clock
for the whole system (not per process), never stepped by NTP or by changing the wall clock, so
a value taken in the publisher and one taken in a consumer process on the same host are
directly comparable. Wall-clock time would also be shared, but can jump.

Two ways to see the rejection, both inside each consumer process:

* the SDK's revocation listener, which runs on the sync thread right after the event changed
  the state, i.e. from then on ``verify()`` rejects the token (every event, every process);
* ``verify()`` itself, polled every 0.5 ms on a sample of tokens in process 0 until it raises
  :class:`TokenRevokedError` (independent of the listener; adds up to the poll interval).

A negative latency means the consumer applied the event before the publisher's ``publish()``
call had returned (the ack travels back while the record is already being fetched).

Both ends of the interval are timestamps taken by Python code, and the publisher's end is
the weaker one: the thread that took the ack has to win the bench process's GIL back (up to
a hundred publishing threads at 1,000/s; one switch interval is 5 ms) before it can read
the clock, so "returned" can be late and every latency measured from it short by as much.
Each sample is therefore also timed from ``publish()`` being *called* (the ``from call``
columns): that includes the broker's write and the ack's way back, which the consumer never
waits for, so it bounds the true propagation from above whatever the publishing process
does, as the "from return" figures bound it, roughly, from below.

CPU: each consumer process reports its CPU time (``time.process_time()``) over a phase, and the
bench process its own (the publisher); *CPU demand* is their sum over the phase's duration, in
cores. When it nears the machine's core count (the broker needs some too), events queue for a
CPU and the tail grows: that, not the network, is what bounds p99 on a small machine.

GC: each consumer also reports the longest pause of Python's cyclic garbage collector over a
phase (``gc.callbacks``). A full collection walks every object the process built at start
(PyJWT, cryptography, pydantic, kafka-python...): tens of ms on a small machine, and every
revocation that arrives meanwhile waits. ``run(gc_freeze_at=...)`` repeats the given N with the
SDK's opt-in ``gc_freeze_when_ready``, which moves those objects out of the collector's reach
once the SDK is ready.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import math
import multiprocessing
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

import jwt

from bench._common import EVENT_KEY, SECRET, percentile, settings, temp_topic
from consumer_sdk import Revocast, TokenRevokedError
from producer import Publisher, PublisherSettings
from revocation_events import Event, KafkaSettings, TokenRevoked

__all__ = [
    "HEADER",
    "PropagationRow",
    "Published",
    "check_applied",
    "format_row",
    "phase_count",
    "publish_paced",
    "run",
    "summarise",
    "tail_shared",
    "token_for",
]

_POLL_INTERVAL = 0.0005
_POLL_WINDOW = 2
_READY_TIMEOUT = 240.0
_COLLECT_TIMEOUT = 20.0
_ACK_BUDGET = 0.1
"""Seconds of ack latency the publishing pool absorbs at full rate (acks reach 30-50 ms when
10-20 consumer processes share 2 cores with the broker)."""
_MAX_PUBLISHERS = 256
MIN_SAMPLES = 200
"""Samples (revocations x processes) a phase collects at least, so that its p99 is not just
its maximum: at 10/s for 5 s one process yields 50, and nearest-rank p99 of 50 is the max."""


@dataclass(frozen=True)
class PropagationRow:
    processes: int
    rate: int
    achieved_rate: float
    revocations: int
    samples: int
    missing: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    verify_samples: int
    verify_p50_ms: float
    verify_p99_ms: float
    ack_p50_ms: float
    consumer_cpu_ms: float
    """CPU per revocation of the median consumer process (kafka-python's fetch round trip,
    decoding, applying)."""
    gc_max_ms: float
    """Longest pause of Python's cyclic garbage collector in any consumer over the phase."""
    cpu_cores: float
    """CPU used by the consumers and the publisher over the phase, in cores."""
    gc_freeze: bool = False
    """The consumers ran with ``gc_freeze_when_ready=True``."""
    tail_shared: float = float("nan")
    """Of the samples at or above the phase's p99, the share whose revocation reached at least
    half of the processes that late too: a delay before the consumers (the broker, a pause of
    its JVM, the publisher) rather than in one consumer process (its CPU turn, its GC)."""
    call_p50_ms: float = float("nan")
    call_p99_ms: float = float("nan")
    """The same samples timed from ``publish()`` being *called*: an upper bound that no delay
    in the publishing process can shrink (see the module docstring)."""


def tail_shared(latencies: dict[int, list[float]], p99: float) -> float:
    """:attr:`PropagationRow.tail_shared` of per-revocation latencies (one per process)."""
    tail = shared = 0
    for per_process in latencies.values():
        late = sum(1 for v in per_process if v >= p99)
        tail += late
        if late * 2 >= len(per_process):
            shared += late
    return shared / tail if tail else float("nan")


def token_for(jti: str, iat: int) -> str:
    """The HS256 token a consumer checks for ``jti`` (deterministic: every process agrees)."""
    claims = {"sub": "bench", "jti": jti, "iat": iat, "exp": iat + 3600}
    return jwt.encode(claims, SECRET, algorithm="HS256", headers={"kid": "k1"})


# -- the consumer process --------------------------------------------------------------------


def _consumer_main(
    conn: Connection, bootstrap: str, topic: str, poll_verify: bool, gc_freeze: bool
) -> None:
    kafka = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    rc = Revocast(settings(kafka=kafka, gc_freeze_when_ready=gc_freeze))
    seen: dict[str, int] = {}

    def on_revocation(event: Event) -> None:
        if isinstance(event, TokenRevoked):
            seen[event.jti] = time.monotonic_ns()

    rc.add_revocation_listener(on_revocation)
    conn.send(("ready", rc.wait_until_ready(_READY_TIMEOUT)))
    gc_pauses = _GcPauses()
    verified: dict[str, int] = {}
    cpu_start = time.process_time()
    poller_cpu: list[float] = []  # the verify poller's own CPU: not the SDK's
    stop = threading.Event()
    poller: threading.Thread | None = None
    try:
        while True:
            cmd = conn.recv()
            if cmd[0] == "phase":
                cpu_start = time.process_time()
                gc_pauses.longest = 0
            if cmd[0] == "phase" and poll_verify:
                _, prefix, count, every, iat = cmd
                stop = threading.Event()
                jtis = [f"{prefix}-{i}" for i in range(0, count, every)]
                poller = threading.Thread(
                    target=_poll_verify,
                    args=(rc, jtis, iat, verified, stop, poller_cpu),
                    daemon=True,
                )
                poller.start()
                conn.send(("phase", True))
            elif cmd[0] == "phase":
                conn.send(("phase", True))
            elif cmd[0] == "collect":
                _, prefix, count = cmd
                expected = [f"{prefix}-{i}" for i in range(count)]
                deadline = time.monotonic() + _COLLECT_TIMEOUT
                while time.monotonic() < deadline and not all(j in seen for j in expected):
                    time.sleep(0.05)
                if poller is not None:
                    poller.join(max(0.0, deadline - time.monotonic()))
                    stop.set()
                    poller.join()
                    poller = None
                conn.send(
                    (
                        "collected",
                        {j: seen[j] for j in expected if j in seen},
                        {j: t for j, t in verified.items() if j.startswith(prefix + "-")},
                        time.process_time() - cpu_start - sum(poller_cpu),
                        gc_pauses.longest,
                    )
                )
                poller_cpu.clear()
            else:
                break
    finally:
        stop.set()
        gc_pauses.close()
        rc.close()
        conn.close()


class _GcPauses:
    """The longest pause of the cyclic garbage collector (any generation), via ``gc.callbacks``."""

    def __init__(self) -> None:
        self.longest = 0
        self._started = 0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, _info: dict[str, int]) -> None:
        now = time.monotonic_ns()
        if phase == "start":
            self._started = now
        elif self._started:
            self.longest = max(self.longest, now - self._started)

    def close(self) -> None:
        gc.callbacks.remove(self._on_gc)


def _poll_verify(
    rc: Revocast,
    jtis: list[str],
    iat: int,
    out: dict[str, int],
    stop: threading.Event,
    cpu: list[float],
) -> None:
    tokens = {j: token_for(j, iat) for j in jtis}
    pending = collections.deque(jtis)
    try:
        while pending and not stop.is_set():
            for jti in list(pending)[:_POLL_WINDOW]:
                try:
                    rc.verify(tokens[jti])
                except TokenRevokedError:
                    out[jti] = time.monotonic_ns()
                    pending.remove(jti)
            time.sleep(_POLL_INTERVAL)
    finally:
        cpu.append(time.thread_time())  # this thread's CPU since it started


# -- the publisher side ----------------------------------------------------------------------


class _Consumers:
    def __init__(self, bootstrap: str, topic: str, n: int, gc_freeze: bool) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conns: list[Connection] = []
        self.procs: list[Any] = []
        for rank in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_consumer_main,
                args=(child, bootstrap, topic, rank == 0, gc_freeze),
                name=f"bench-consumer-{rank}",
                daemon=True,
            )
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def receive_all(self, timeout: float) -> list[Any]:
        deadline = time.monotonic() + timeout
        out = []
        for conn, proc in zip(self.conns, self.procs, strict=True):
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"{proc.name} did not answer within {timeout:.0f}s")
            out.append(conn.recv())
        return out

    def send_all(self, *cmd: object) -> None:
        for conn in self.conns:
            conn.send(cmd)

    def close(self) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc in self.procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)


@dataclass(frozen=True)
class Published:
    """What :func:`publish_paced` saw, per revocation: ``monotonic_ns`` when ``publish()``
    was called and when it returned, and the rate achieved."""

    called: list[int]
    returned: list[int]
    achieved_rate: float

    @property
    def acks_s(self) -> list[float]:
        return [(r - c) / 1e9 for c, r in zip(self.called, self.returned, strict=True)]


def publish_paced(
    publisher: Publisher, prefix: str, count: int, rate: int, exp: datetime
) -> Published:
    """Publish ``count`` revocations on a fixed schedule (late calls catch up, never shift the
    schedule)."""
    called = [0] * count
    returned = [0] * count

    def one(i: int) -> None:
        called[i] = time.monotonic_ns()
        publisher.revoke_token(f"{prefix}-{i}", expires_at=exp)
        returned[i] = time.monotonic_ns()

    # Each call waits for its ack, so a rate needs rate x ack time calls in flight: size the
    # pool for acks up to _ACK_BUDGET so that the bench's own pool does not cap the rate.
    workers = max(1, min(_MAX_PUBLISHERS, math.ceil(rate * _ACK_BUDGET)))
    start = time.monotonic()
    with ThreadPoolExecutor(workers, thread_name_prefix="bench-publish") as pool:
        futures = []
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(one, i))
        for f in futures:
            f.result()
    elapsed = (max(returned) - start * 1e9) / 1e9
    return Published(called, returned, count / elapsed if elapsed > 0 else float("nan"))


def check_applied(rows: Sequence[PropagationRow]) -> None:
    """Raise if any consumer never applied a revocation of a phase: that is a lost
    revocation (or a broken bench), not a slow one, and a run must not pass with it."""
    lost = [r for r in rows if r.missing]
    if lost:
        raise RuntimeError(
            f"revocations never applied within {_COLLECT_TIMEOUT:.0f} s: "
            + ", ".join(
                f"N={r.processes} {r.rate}/s{' gc.freeze' if r.gc_freeze else ''}: "
                f"{r.missing} of {r.missing + r.samples}"
                for r in lost
            )
        )


def phase_count(rate: int, seconds: float, processes: int, min_samples: int) -> int:
    """Revocations a phase publishes: ``rate x seconds``, or more (a longer phase at the same
    rate) until ``processes`` consumers yield at least ``min_samples`` latencies."""
    return max(1, round(rate * seconds), math.ceil(min_samples / processes))


def run(
    bootstrap: str,
    processes: Sequence[int],
    rates: Sequence[int],
    seconds: float,
    rows: list[PropagationRow],
    gc_freeze_at: Sequence[int] = (),
    min_samples: int = MIN_SAMPLES,
) -> None:
    """Every N in ``processes`` with the SDK's defaults, then every N in ``gc_freeze_at``
    again with ``gc_freeze_when_ready=True`` in each consumer. Appends a row to ``rows`` as
    each phase is measured (earlier rows survive a failure); raises at the end if a
    revocation was never applied (:func:`check_applied`). A phase lasts ``seconds``, longer
    at low rates and few processes, to collect ``min_samples`` (:func:`phase_count`)."""
    first = len(rows)
    runs = [(n, False) for n in processes] + [(n, True) for n in gc_freeze_at]
    for n, gc_freeze in runs:
        with temp_topic(bootstrap, "bench-propagation") as kafka:
            consumers = _Consumers(bootstrap, kafka.topic, n, gc_freeze)
            try:
                ready = consumers.receive_all(_READY_TIMEOUT + 30)
                if not all(r[1] for r in ready):
                    raise RuntimeError(f"not every consumer became ready: {ready}")
                publisher_settings = PublisherSettings(
                    issuer="bench", kafka=kafka, signing_key=EVENT_KEY, delivery="direct"
                )
                with Publisher(publisher_settings) as publisher:
                    _phase(consumers, publisher, f"warm{n}", 3, 10)  # connections, metadata
                    for rate in rates:
                        count = phase_count(rate, seconds, n, min_samples)
                        prefix = f"n{n}r{rate}" + ("f" if gc_freeze else "")
                        row = _phase(consumers, publisher, prefix, count, rate)
                        rows.append(replace(row, gc_freeze=gc_freeze))
                        print(format_row(rows[-1]), flush=True)
            finally:
                consumers.close()
    check_applied(rows[first:])


def _phase(
    consumers: _Consumers, publisher: Publisher, prefix: str, count: int, rate: int
) -> PropagationRow:
    iat = int(time.time())
    every = max(1, count // 40)
    consumers.send_all("phase", prefix, count, every, iat)
    consumers.receive_all(60)
    exp = datetime.fromtimestamp(iat + 3600, UTC)
    cpu_start, wall_start = time.process_time(), time.monotonic()
    published = publish_paced(publisher, prefix, count, rate, exp)
    publisher_cpu, elapsed = time.process_time() - cpu_start, time.monotonic() - wall_start
    consumers.send_all("collect", prefix, count)
    results = consumers.receive_all(_COLLECT_TIMEOUT + 60)
    return summarise(prefix, rate, published, results, publisher_cpu, elapsed)


def summarise(
    prefix: str,
    rate: int,
    published: Published,
    results: Sequence[tuple[str, dict[str, int], dict[str, int], float, int]],
    publisher_cpu: float,
    elapsed: float,
) -> PropagationRow:
    """One phase's row from what the publisher saw and each consumer's ``collected`` answer
    (``seen`` and ``verified``: jti -> ``monotonic_ns``, CPU seconds, longest GC pause ns)."""
    count = len(published.returned)
    latencies: list[float] = []
    from_call: list[float] = []
    by_revocation: dict[int, list[float]] = collections.defaultdict(list)
    verify_lat: list[float] = []
    missing = 0
    consumer_cpu = sorted(cpu for _, _, _, cpu, _ in results)
    for rank, (_, seen, verified, _, _) in enumerate(results):
        for i in range(count):
            t = seen.get(f"{prefix}-{i}")
            if t is None:
                missing += 1
            else:
                latencies.append((t - published.returned[i]) / 1e6)
                from_call.append((t - published.called[i]) / 1e6)
                by_revocation[i].append(latencies[-1])
        if rank == 0:
            for jti, t in verified.items():
                verify_lat.append((t - published.returned[int(jti.rsplit("-", 1)[1])]) / 1e6)
    if not latencies:
        raise RuntimeError(f"{prefix}: no consumer applied any revocation")
    nan = float("nan")
    return PropagationRow(
        processes=len(results),
        rate=rate,
        achieved_rate=published.achieved_rate,
        revocations=count,
        samples=len(latencies),
        missing=missing,
        p50_ms=percentile(latencies, 0.5),
        p99_ms=percentile(latencies, 0.99),
        max_ms=max(latencies),
        verify_samples=len(verify_lat),
        verify_p50_ms=percentile(verify_lat, 0.5) if verify_lat else nan,
        verify_p99_ms=percentile(verify_lat, 0.99) if verify_lat else nan,
        ack_p50_ms=percentile(published.acks_s, 0.5) * 1e3,
        consumer_cpu_ms=consumer_cpu[len(consumer_cpu) // 2] / count * 1e3,
        gc_max_ms=max(pause for *_, pause in results) / 1e6,
        cpu_cores=(sum(consumer_cpu) + publisher_cpu) / elapsed,
        tail_shared=tail_shared(by_revocation, percentile(latencies, 0.99)),
        call_p50_ms=percentile(from_call, 0.5),
        call_p99_ms=percentile(from_call, 0.99),
    )


HEADER = (
    f"{'N':>3} {'gc.freeze':>9} {'rate/s':>7} {'achieved':>8} {'events':>6} {'samples':>7} "
    f"{'miss':>4} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} | "
    f"{'verify n':>8} {'p50 ms':>7} {'p99 ms':>7} "
    f"| {'ack p50':>7} {'call p50':>8} {'call p99':>8} "
    f"| {'cpu/ev':>6} {'cores':>5} {'gc max':>6} {'shared':>6}"
)


def format_row(r: PropagationRow) -> str:
    return (
        f"{r.processes:>3} {'yes' if r.gc_freeze else 'no':>9} {r.rate:>7} "
        f"{r.achieved_rate:>8.0f} {r.revocations:>6} {r.samples:>7} "
        f"{r.missing:>4} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f} {r.max_ms:>7.1f} | "
        f"{r.verify_samples:>8} {r.verify_p50_ms:>7.2f} {r.verify_p99_ms:>7.2f} | "
        f"{r.ack_p50_ms:>7.2f} {r.call_p50_ms:>8.2f} {r.call_p99_ms:>8.2f} | "
        f"{r.consumer_cpu_ms:>6.2f} {r.cpu_cores:>5.2f} "
        f"{r.gc_max_ms:>6.1f} {r.tail_shared:>6.0%}"
    )
