"""Consumer SDK benchmark: verify overhead, memory per revoked jti, bootstrap rate.

    python -m bench.consumer_sdk.bench_verify [--quick] [--no-kafka]

Targets (reported, not asserted): revocation check <= 1 us over bare PyJWT HS256 and a ratio
<= 1.05; <= 80 bytes per revoked jti at 1M; a 1M-event bootstrap ready in <= 10 s. The broker
is ``$KAFKA_BOOTSTRAP_SERVERS`` (default 127.0.0.1:19092).

The verify table reports, per state size, bare PyJWT (``jwt.PyJWT(options).decode_complete``)
and ``Revocast.verify`` medians (their difference is noise-dominated on a busy machine), the
overhead measured directly (``verify`` with PyJWT's decode stubbed by the already-decoded
result, minus the stub alone, in back-to-back pairs; the median difference; see
:mod:`bench.request_path`), and ``verify`` of a token already in the opt-in verified-token
cache (``verify_cache_size``).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import timeit
import tracemalloc
import uuid
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

import jwt

from bench._common import EVENT_KEY, SECRET, fill, median_us, settings
from consumer_sdk import Revocast, RevocationState
from consumer_sdk.testing import InMemorySource
from revocation_events import EventCodec, EventSigner, EventVerifier, KafkaSettings, TokenRevoked


def bench_verify(quick: bool) -> list[tuple[str, float, float, float, float]]:
    """Rows of (label, bare µs, verify µs, direct overhead µs, cached-hit µs)."""
    now = int(time.time())
    tok = jwt.encode(
        {"sub": "alice", "jti": str(uuid.uuid4()), "iat": now, "exp": now + 3600, "sid": "s1"},
        SECRET,
        algorithm="HS256",
        headers={"kid": "k1"},
    )
    pyjwt = jwt.PyJWT({"require": ["exp", "iat"]})
    algorithms = ["HS256"]

    def bare() -> object:
        return pyjwt.decode_complete(tok, SECRET, algorithms=algorithms)

    decoded = pyjwt.decode_complete(tok, SECRET, algorithms=algorithms)

    def stub(token: str | bytes, key: Any, algorithms: Any = None, **_: Any) -> dict[str, Any]:
        if isinstance(token, str):
            token = token.encode()
        payload = decoded["payload"].copy()
        for name in ("jti", "sub", "sid"):  # fresh strings, as JSON parsing gives
            payload[name] = payload[name][:1] + payload[name][1:]
        return {"header": decoded["header"].copy(), "payload": payload, "signature": b""}

    def stub_alone() -> object:
        return stub(tok, SECRET, algorithms=algorithms)

    def ready(s: Any) -> Revocast:
        src = InMemorySource()
        rc = Revocast(s, source=src)
        src.set_ready()
        return rc

    rc = ready(settings())
    cached = ready(settings(verify_cache_size=1024))
    stubbed = ready(settings())
    cached.state = stubbed.state = rc.state
    stubbed._verifier._decode_complete = stub  # type: ignore[assignment]
    cached.verify(tok)
    number, repeat = (2000, 7) if quick else (10000, 15)
    rows = []
    filled = 0
    for size in (0, 100_000, 1_000_000):
        fill(rc.state, size - filled, filled)
        filled = size
        gc.collect()
        # Interleave to share the machine's noise between all measurements.
        b, v, c, d = [], [], [], []
        for _ in range(repeat):
            b.append(median_us(bare, number, 1))
            v.append(median_us(lambda: rc.verify(tok), number, 1))
            c.append(median_us(lambda: cached.verify(tok), number, 1))
            for _ in range(10):
                t1 = timeit.timeit(lambda: stubbed.verify(tok), number=200)
                t0 = timeit.timeit(stub_alone, number=200)
                d.append((t1 - t0) / 200 * 1e6)
        rows.append(
            (
                f"{size:,}",
                statistics.median(b),
                statistics.median(v),
                statistics.median(d),
                statistics.median(c),
            )
        )
    claims, kid = {"sub": "alice", "jti": "x", "iat": now, "sid": "s1"}, "k1"
    check = median_us(lambda: rc.state.check(claims, kid), number * 10, repeat)
    rows.append(("check() alone @1M", 0.0, check, 0.0, 0.0))
    for r in (rc, cached, stubbed):
        r.close()
    return rows


def bench_memory(n: int) -> float:
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    state = RevocationState(clock=time.time, max_token_lifetime=3600)
    fill(state, n)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert state.size_by_kind()["jti"] == n
    return used / n


def bench_bootstrap(bootstrap: str, n: int) -> dict[str, float]:
    topic = f"bench-{uuid.uuid4().hex[:10]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(topic, 3, 1)], timeout_ms=30_000)
    codec = EventCodec(signer=EventSigner(EVENT_KEY))
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024, compression_type=None
    )
    expires = datetime.now(UTC) + timedelta(hours=1)
    t0 = time.perf_counter()
    values = []
    for i in range(n):
        rec = codec.encode(TokenRevoked(issuer="bench", jti=f"boot-{i}", expires_at=expires))
        values.append(rec)
        producer.send(topic, key=rec.key, value=rec.value, headers=list(rec.headers))
    producer.flush(300)
    producer.close()
    produce_s = time.perf_counter() - t0
    try:
        kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
        start = time.perf_counter()
        with Revocast(settings(kafka=kafka)) as rc:
            ready = rc.wait_until_ready(600)
            elapsed = time.perf_counter() - start
            applied = rc.stats()["applied"].get("token.revoked", 0)
        # Where the time goes, per event, offline.
        decoder = EventCodec(verifier=EventVerifier([EVENT_KEY.verification_key()]))
        sample = values[: min(n, 20_000)]
        t = time.perf_counter()
        events = [decoder.decode(r.value, r.headers) for r in sample]
        decode_us = (time.perf_counter() - t) / len(sample) * 1e6
        state = RevocationState(clock=time.time, max_token_lifetime=3600)
        t = time.perf_counter()
        for e in events:
            state.apply(e)
        apply_us = (time.perf_counter() - t) / len(sample) * 1e6
    finally:
        admin.delete_topics([topic], timeout_ms=30_000)
        admin.close()
    return {
        "events": n,
        "ready": float(ready),
        "applied": applied,
        "seconds": elapsed,
        "rate": n / elapsed,
        "produce_s": produce_s,
        "decode_us": decode_us,
        "apply_us": apply_us,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, 20k-event bootstrap")
    parser.add_argument("--no-kafka", action="store_true", help="skip the bootstrap benchmark")
    args = parser.parse_args()

    print("verify (median us per token, HS256)")
    print(
        f"{'jti entries':>20} {'bare PyJWT':>11} {'Revocast':>9} {'difference':>10} "
        f"{'overhead, direct':>16} {'ratio':>6} {'verify, cached hit':>18} {'ratio':>6}"
    )
    for label, bare, ours, direct, hit in bench_verify(args.quick):
        if bare:
            print(
                f"{label:>20} {bare:11.2f} {ours:9.2f} {ours - bare:+10.2f} {direct:16.2f} "
                f"{(bare + direct) / bare:6.3f} {hit:18.2f} {hit / bare:6.3f}"
            )
        else:
            print(f"{label:>20} {'':11} {ours:9.2f}")
    n_mem = 1_000_000
    print(f"\nmemory: {bench_memory(n_mem):.1f} bytes per revoked jti at {n_mem:,} (tracemalloc)")
    if not args.no_kafka:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:19092")
        n = 20_000 if args.quick else 1_000_000
        r = bench_bootstrap(bootstrap, n)
        print(
            f"\nbootstrap: {r['events']:,.0f} events, ready={bool(r['ready'])}, "
            f"applied={r['applied']:,.0f}, in {r['seconds']:.2f}s = {r['rate']:,.0f} events/s "
            f"(producing them took {r['produce_s']:.1f}s)"
        )
        print(
            f"  offline per event: decode+verify {r['decode_us']:.1f} us, "
            f"apply {r['apply_us']:.2f} us"
        )


if __name__ == "__main__":
    main()
