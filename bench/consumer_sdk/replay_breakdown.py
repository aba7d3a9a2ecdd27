"""Log replay per record, stage by stage, without a broker: where the microseconds go now.

    python -m bench.consumer_sdk.replay_breakdown [--events N] [--rounds R]

Builds ``N`` signed ``TokenRevoked`` records into v2 record batches of 3,000 (about one
1 MB fetch) with kafka-python's own builder, as :func:`bench.bootstrap.produce_revocations`
writes them, then times each stage over all of them, every stage once per round, rounds
interleaved:

* **parse**: :class:`~consumer_sdk._kafka_records.FastPartitionRecords` (CRC check, records);
* **signature**: :meth:`EventVerifier.verify` (header parse + HMAC-SHA256);
* **validation**: the codec's pydantic ``validate_json``;
* **decode**: :meth:`EventCodec.decode` (the two above and its own checks);
* **times**: the two event times to epoch seconds as the state converts them;
* **apply**: :meth:`RevocationState.apply` of the decoded events into an empty state;
* **sink**: ``_Sink.records`` per fetched batch of 500 (decode + apply + counters), the
  sync thread's work minus parsing, with the cyclic GC on and off.

Figures are thread CPU time (``time.thread_time``) per record, median and best of the
rounds: on a shared machine other processes inflate wall time far more than CPU time. What
this leaves out of a real replay is kafka-python's fetch round trips and waits on the broker
(``python -m bench.consumer_sdk.bench_replay`` times those end to end).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import TopicPartition

from bench._common import settings
from bench.bootstrap import signed_revocations
from consumer_sdk import Revocast, RevocationState
from consumer_sdk._client import build_codec
from consumer_sdk._kafka_records import FastPartitionRecords
from consumer_sdk._state import _ts
from consumer_sdk.testing import InMemorySource
from revocation_events import TokenRevoked
from revocation_events._wire import _validate_json

_PER_BATCH = 3000
_POLL = 500
_TP = TopicPartition("replay", 0)


def _batches(n: int) -> list[tuple[int, bytes]]:
    now = time.time()
    _, revocations = signed_revocations(n, datetime.fromtimestamp(now, UTC) + timedelta(hours=1))
    out = []
    for start in range(0, n, _PER_BATCH):
        builder = MemoryRecordsBuilder(2, 0, 1 << 24, offset=start)
        for i, (jti, value, headers) in zip(
            range(start, min(n, start + _PER_BATCH)), revocations, strict=False
        ):
            builder.append(
                timestamp=int(now * 1000) + i // 20,
                key=f"jti:{jti}".encode(),
                value=value,
                headers=headers,
            )
        builder.close()
        out.append((start, bytes(builder.buffer())))
    return out


def _stages(n: int) -> dict[str, Callable[[], float]]:
    batches = _batches(n)
    records: list[Any] = [
        r
        for off, data in batches
        for r in FastPartitionRecords(off, _TP, MemoryRecords(data)).take()
    ]
    codec = build_codec(settings())
    verifier = codec._verifier
    assert verifier is not None
    events = [codec.decode(r.value, r.headers) for r in records]
    expiring = [e for e in events if isinstance(e, TokenRevoked)]

    def parse() -> None:
        for off, data in batches:
            part = FastPartitionRecords(off, _TP, MemoryRecords(data))
            while part.take(_POLL):
                pass

    def signature() -> None:
        verify = verifier.verify
        for r in records:
            verify(r.value, r.headers[0][1])

    def validation() -> None:
        for r in records:
            _validate_json(r.value)

    def decode() -> None:
        run = codec.decode
        for r in records:
            run(r.value, r.headers)

    def times() -> None:
        for e in expiring:
            _ts(e.expires_at)
            _ts(e.occurred_at)

    def apply() -> None:
        run = RevocationState(clock=time.time, max_token_lifetime=3600.0).apply
        for e in events:
            run(e)

    def sink() -> None:
        rc = Revocast(settings(max_token_lifetime=3600.0), source=InMemorySource())
        try:
            for i in range(0, len(records), _POLL):
                rc._sink.records(records[i : i + _POLL])
            assert sum(rc.stats()["applied"].values()) == n
        finally:
            rc.close()

    def sink_without_gc() -> None:
        gc.disable()
        try:
            sink()
        finally:
            gc.enable()

    def timed(fn: Callable[[], None]) -> Callable[[], float]:
        def run() -> float:
            start = time.thread_time()
            fn()
            return (time.thread_time() - start) / n * 1e6

        return run

    stages = [parse, signature, validation, decode, times, apply, sink, sink_without_gc]
    return {fn.__name__.replace("_", " "): timed(fn) for fn in stages}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    stages = _stages(args.events)
    samples: dict[str, list[float]] = {name: [] for name in stages}
    for _ in range(args.rounds):
        for name, run in stages.items():
            samples[name].append(run())
    print(f"{args.events:,} records, {args.rounds} rounds; thread CPU µs per record")
    for name, values in samples.items():
        print(f"{name:<16} median {statistics.median(values):6.2f}   best {min(values):6.2f}")


if __name__ == "__main__":
    main()
