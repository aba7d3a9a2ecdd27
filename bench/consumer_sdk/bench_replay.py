"""Log replay, stage by stage: where each record's microseconds go, before and after.

    python -m bench.consumer_sdk.bench_replay [--events N] [--topic T] [--baseline REV]
                                              [--repeat R] [--quick]

Fills a fresh 3-partition topic with ``N`` signed ``TokenRevoked`` records
(:func:`bench.bootstrap.produce_revocations`; or reuses ``--topic``), then times each stage
alone, in this process, per record:

* **kafka poll**: ``KafkaConsumer.poll()`` until every record is in, with kafka-python's own
  record parser ("before") and the SDK's (:mod:`consumer_sdk._kafka_records`, "after"), and
  with larger fetch sizes;
* **decode**: the original decode path (strict base64 with ``base64.b64decode``,
  ``hmac.digest``, ``TypeAdapter.validate_json``; kept below as ``_before_decode``) vs
  :meth:`EventCodec.decode` now;
* **apply**: the original ``TokenRevoked`` branch of ``RevocationState.apply`` (kept below) vs
  now;
* **sink**: ``_Sink.record`` per record vs ``_Sink.records`` per fetched batch (decode + apply
  + counters + metrics + listeners, as the sync thread runs them), with prometheus metrics on
  and off, with the cyclic GC on and off;
* **end to end**: ``Revocast(...).wait_until_ready()`` on the topic; with ``--baseline REV``
  the same in a subprocess running the SDK as of git revision ``REV`` (``git archive``).

Each figure is the best of ``--repeat`` runs: wall µs per record and, in brackets, CPU µs
per record of the measuring thread (process for end to end), which a shared, busy machine
disturbs much less than wall time. The broker is ``$KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import gc
import hashlib
import hmac
import math
import os
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition

from bench._common import EVENT_KEY, create_topic, delete_topic, settings
from bench.bootstrap import produce_revocations
from consumer_sdk import Revocast, RevocationState
from consumer_sdk._client import build_codec
from consumer_sdk._fptable import fingerprint
from consumer_sdk._kafka_records import install
from consumer_sdk._metrics import Metrics
from consumer_sdk.testing import InMemorySource
from revocation_events import Event, EventCodec, KafkaSettings, MalformedEventError, TokenRevoked
from revocation_events._models import event_adapter
from revocation_events._signing import SIGNATURE_HEADER

_IN_MEMORY_MAX = 200_000  # records held in memory for the offline stages
_ROOT = Path(__file__).resolve().parents[2]


# -- the code before this benchmark's changes, for side-by-side figures ----------------------


def _before_decode(value: bytes, headers: Sequence[tuple[str, bytes]]) -> Event:
    """``EventCodec.decode`` + ``EventVerifier.verify`` as they were (HMAC keys only)."""
    sig = None
    for key, val in headers:
        if key == SIGNATURE_HEADER:
            sig = val
            break
    if sig is None:
        raise MalformedEventError("unsigned", "record has no signature header")
    try:
        kid, alg, sig_text = sig.decode("ascii").split(".", 2)
        padded = sig_text + "=" * (-len(sig_text) % 4)
        signature = base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)
    except (UnicodeDecodeError, ValueError, binascii.Error):
        raise MalformedEventError("bad_signature", "signature header is malformed") from None
    if kid != EVENT_KEY.kid:
        raise MalformedEventError("unknown_key", f"event signed with unknown key id {kid!r}")
    secret = EVENT_KEY._secret
    assert secret is not None
    mac = hmac.digest(secret, value, hashlib.sha256)
    if alg != EVENT_KEY.algorithm or not hmac.compare_digest(mac, signature):
        raise MalformedEventError("bad_signature", f"signature by key {kid!r} does not verify")
    event: Event = event_adapter.validate_json(value)
    if event.key_id is not None and event.key_id != kid:
        raise MalformedEventError("bad_signature", "key_id does not match the signature")
    return event


class _BeforeState(RevocationState):
    """``apply`` for ``TokenRevoked`` as it was: both timestamps first (the table and its
    expiry are today's: the comparison is of the apply path only)."""

    def apply(self, event: Event) -> bool:
        at = event.occurred_at.timestamp()
        live = self._clock() - self._grace
        assert isinstance(event, TokenRevoked)
        until = event.expires_at.timestamp()
        if until <= live:
            return False
        fp = fingerprint(event.jti)
        return self._jti.add(fp, until, at, live)


class _NoMetrics(Metrics):
    """The SDK's metrics as they are without ``prometheus-client``."""

    def __init__(self, service: str) -> None:
        super().__init__(service)
        self._c = {}


# -- measuring ---------------------------------------------------------------------------------


class Timing:
    """Best wall and CPU seconds over repeats, reported per record."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.wall = math.inf
        self.cpu = math.inf

    def add(self, wall: float, cpu: float) -> None:
        self.wall = min(self.wall, wall)
        self.cpu = min(self.cpu, cpu)

    def us(self) -> tuple[float, float]:
        return self.wall / self.records * 1e6, self.cpu / self.records * 1e6

    def cell(self) -> str:
        wall, cpu = self.us()
        return f"{wall:7.2f} ({cpu:6.2f})"


def _time(fn: Callable[[], object], records: int, repeat: int, *, gc_off: bool = False) -> Timing:
    t = Timing(records)
    for _ in range(repeat):
        gc.collect()
        was = gc.isenabled()
        if gc_off:
            gc.disable()
        try:
            w0, c0 = time.perf_counter(), time.thread_time()
            fn()
            t.add(time.perf_counter() - w0, time.thread_time() - c0)
        finally:
            if gc_off and was:
                gc.enable()
    return t


def _consumer(kafka: KafkaSettings, **config: Any) -> Any:
    consumer = KafkaConsumer(
        bootstrap_servers=list(kafka.bootstrap_servers),
        group_id=None,
        enable_auto_commit=False,
        **config,
    )
    tps = [TopicPartition(kafka.topic, p) for p in consumer.partitions_for_topic(kafka.topic)]
    consumer.assign(tps)
    return consumer, tps


def _poll_all(kafka: KafkaSettings, n: int, fast: bool, keep: int = 0, **config: Any) -> Any:
    """Poll the whole topic once; return (wall s, thread CPU s, first ``keep`` records)."""
    consumer, tps = _consumer(kafka, **config)
    try:
        if fast:
            assert install(consumer)
        for tp in tps:
            consumer.seek(tp, 0)
        kept: list[tuple[bytes, Any]] = []
        got = 0
        w0, c0 = time.perf_counter(), time.thread_time()
        while got < n:
            for records in consumer.poll(timeout_ms=1000).values():
                got += len(records)
                if len(kept) < keep:
                    kept.extend((r.value, r.headers) for r in records[: keep - len(kept)])
        return time.perf_counter() - w0, time.thread_time() - c0, kept
    finally:
        consumer.close()


def stage_poll(kafka: KafkaSettings, n: int, repeat: int) -> list[tuple[str, Timing, Timing]]:
    rows = []
    variants: list[tuple[str, dict[str, Any]]] = [
        ("default fetch sizes", {}),
        ("max_partition_fetch_bytes=8 MiB", {"max_partition_fetch_bytes": 8 << 20}),
    ]
    for label, config in variants:
        before, after = Timing(n), Timing(n)
        for _ in range(repeat):  # interleaved, to share the machine's noise
            before.add(*_poll_all(kafka, n, False, **config)[:2])
            after.add(*_poll_all(kafka, n, True, **config)[:2])
        rows.append((f"kafka poll, {label}", before, after))
    return rows


def stage_offline(
    records: list[tuple[bytes, Any]], repeat: int
) -> list[tuple[str, Timing, Timing]]:
    n = len(records)
    codec: EventCodec = build_codec(settings())
    rows = []
    before = _time(lambda: [_before_decode(v, h) for v, h in records], n, repeat)
    after = _time(lambda: [codec.decode(v, h) for v, h in records], n, repeat)
    rows.append(("decode + verify", before, after))
    events = [codec.decode(v, h) for v, h in records]
    assert events == [_before_decode(v, h) for v, h in records[:1000]] + events[1000:]

    def apply_all(cls: type[RevocationState]) -> Callable[[], object]:
        def run() -> None:
            state = cls(clock=time.time, max_token_lifetime=3600)
            for e in events:
                state.apply(e)

        return run

    rows.append(
        (
            "apply",
            _time(apply_all(_BeforeState), n, repeat),
            _time(apply_all(RevocationState), n, repeat),
        )
    )
    events.clear()

    batches = [records[i : i + 3000] for i in range(0, n, 3000)]  # ~1 MiB fetches

    class Rec:
        __slots__ = ("headers", "timestamp", "value")

        def __init__(self, value: bytes, headers: Any) -> None:
            self.value, self.headers, self.timestamp = value, headers, 0

    fetched = [[Rec(v, h) for v, h in b] for b in batches]

    def sink_run(batched: bool, metrics: bool = True) -> Callable[[], object]:
        def run() -> None:
            rc = Revocast(settings(), source=InMemorySource())
            sink = rc._sink
            if not metrics:  # as without prometheus-client installed
                sink._metrics = _NoMetrics("bench")
            try:
                for batch in fetched:
                    if batched:
                        sink.records(batch)
                    else:
                        for r in batch:
                            sink.record(r.value, r.headers, timestamp_ms=r.timestamp)
                assert sink.applied["token.revoked"] == n, sink.applied
            finally:
                rc.close()

        return run

    rows.append(
        (
            "sink: record() each vs records() per fetch",
            _time(sink_run(False), n, repeat),
            _time(sink_run(True), n, repeat),
        )
    )
    rows.append(
        (
            "sink records(), prometheus metrics on vs off",
            _time(sink_run(True), n, repeat),
            _time(sink_run(True, metrics=False), n, repeat),
        )
    )
    rows.append(
        (
            "sink records(), GC on vs off",
            _time(sink_run(True), n, repeat),
            _time(sink_run(True), n, repeat, gc_off=True),
        )
    )
    return rows


_E2E = """
import sys, time
from bench._common import settings
from consumer_sdk import Revocast
from revocation_events import KafkaSettings
kafka = KafkaSettings(bootstrap_servers=tuple(sys.argv[1].split(",")), topic=sys.argv[2])
w0, c0 = time.perf_counter(), time.process_time()
with Revocast(settings(kafka=kafka)) as rc:
    ready = rc.wait_until_ready(900)
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    applied = rc.stats()["applied"].get("token.revoked", 0)
print(ready, applied, wall, cpu)
"""


def _e2e(kafka: KafkaSettings, n: int, tree: Path) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{_ROOT}"}
    out = subprocess.run(
        [sys.executable, "-c", _E2E, ",".join(kafka.bootstrap_servers), kafka.topic],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
        timeout=1200,
    ).stdout.split()
    ready, applied, wall, cpu = out[-4:]
    if ready != "True" or int(applied) != n:
        raise RuntimeError(f"{tree}: ready={ready} applied={applied} of {n}")
    return float(wall), float(cpu)


@contextlib.contextmanager
def _baseline_tree(rev: str | None) -> Iterator[Path | None]:
    if rev is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="revocast-baseline-") as tmp:
        archive = subprocess.run(
            ["git", "-C", str(_ROOT), "archive", rev, "consumer_sdk", "revocation_events"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        yield Path(tmp)


def stage_e2e(
    kafka: KafkaSettings, n: int, repeat: int, baseline: Path | None
) -> tuple[Timing | None, Timing]:
    before = Timing(n) if baseline is not None else None
    after = Timing(n)
    for _ in range(repeat):
        if before is not None and baseline is not None:
            before.add(*_e2e(kafka, n, baseline))
        after.add(*_e2e(kafka, n, _ROOT))
    return before, after


@contextlib.contextmanager
def _topic(bootstrap: str, existing: str | None, n: int) -> Iterator[KafkaSettings]:
    if existing is not None:
        yield KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=existing)
        return
    topic = f"bench-replay-{os.urandom(5).hex()}"
    create_topic(bootstrap, topic, 3)
    kafka = KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=topic)
    try:
        print(f"producing {n:,} records to {topic} ...", flush=True)
        print(f"  {produce_revocations(kafka, n):.1f} s", flush=True)
        yield kafka
    finally:
        with contextlib.suppress(Exception):
            delete_topic(bootstrap, topic)


def _row(label: str, before: Timing | None, after: Timing) -> str:
    b = before.cell() if before is not None else f"{'-':>16}"
    gain = ""
    if before is not None:
        gain = f"{before.us()[0] / after.us()[0]:5.2f}x ({before.us()[1] / after.us()[1]:4.2f}x)"
    return f"{label:<46} {b}  {after.cell()}  {gain}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--topic", help="reuse this topic (holding exactly --events records)")
    parser.add_argument("--baseline", metavar="REV", help="git revision for end-to-end 'before'")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="10k events, one run each")
    parser.add_argument("--skip", action="append", default=[], choices=["poll", "offline", "e2e"])
    args = parser.parse_args(argv)
    n = 10_000 if args.quick else args.events
    repeat = 1 if args.quick else args.repeat
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
    print(f"load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with _topic(bootstrap, args.topic, n) as kafka, _baseline_tree(args.baseline) as base:
        print(
            f"\nper record, best of {repeat}: wall us (CPU us)"
            f"\n{'stage':<46} {'before':>16}  {'after':>16}  speed-up wall (CPU)"
        )
        if "poll" not in args.skip:
            for label, before, after in stage_poll(kafka, n, repeat):
                print(_row(label, before, after), flush=True)
        if "offline" not in args.skip:
            kept = _poll_all(kafka, n, True, keep=min(n, _IN_MEMORY_MAX))[2]
            for label, before, after in stage_offline(kept, repeat):
                print(_row(f"{label} ({len(kept):,})", before, after), flush=True)
            del kept
        if "e2e" not in args.skip:
            e2e_before, e2e_after = stage_e2e(kafka, n, repeat, base)
            print(_row(f"end to end: ready ({n:,} events)", e2e_before, e2e_after))
            rate = n / e2e_after.wall
            line = f"  after: {rate:,.0f} events/s"
            if e2e_before is not None:
                line += f", before ({args.baseline}): {n / e2e_before.wall:,.0f} events/s"
            print(line)
    print(f"load average at end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
