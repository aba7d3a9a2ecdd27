"""Helpers for the producer tests: keys, settings and reading a topic back."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kafka import KafkaConsumer, TopicPartition

from revocation_events import EventCodec, EventVerifier, SigningKey

__all__ = [
    "UNREACHABLE",
    "PublisherProcess",
    "new_signing_key",
    "read_records",
    "verifying_codec",
]

_REPO = Path(__file__).resolve().parents[2]

UNREACHABLE = "127.0.0.1:1"
"""A bootstrap address nothing listens on: connections are refused at once."""


def new_signing_key(kid: str = "test-key") -> SigningKey:
    return SigningKey.ed25519(kid, Ed25519PrivateKey.generate())


def verifying_codec(key: SigningKey) -> EventCodec:
    return EventCodec(verifier=EventVerifier([key.verification_key()]))


def read_records(bootstrap: str, topic: str, count: int, *, timeout: float = 60.0) -> list[Any]:
    """Every record of every partition from the beginning, until ``count`` arrived.

    Records come grouped by partition, each partition in offset order.
    """
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        by_partition: dict[int, list[Any]] = {tp.partition: [] for tp in tps}
        deadline = time.monotonic() + timeout
        while sum(len(v) for v in by_partition.values()) < count:
            if time.monotonic() > deadline:
                got = sum(len(v) for v in by_partition.values())
                raise AssertionError(f"read {got} of {count} records from {topic}")
            for tp, records in consumer.poll(timeout_ms=200).items():
                by_partition[tp.partition].extend(records)
        # Nothing beyond ``count`` may be there either (no duplicate, no stray record).
        end = consumer.end_offsets(tps, timeout_ms=10_000)
        assert sum(end.values()) == count, f"{sum(end.values())} records in {topic}, not {count}"
    finally:
        consumer.close()
    return [r for p in sorted(by_partition) for r in by_partition[p]]


class PublisherProcess:
    """A :mod:`tests.producer._outbox_process` child, answering one line per command."""

    def __init__(self, env: dict[str, str]) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.producer._outbox_process"],
            env=env,
            cwd=_REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self._stdin, self._stdout = self.process.stdin, self.process.stdout
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._stdout, selectors.EVENT_READ)
        self._buffer = b""
        assert self.answer(timeout=60) == "ready"

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, line: str) -> None:
        self._stdin.write(line.encode() + b"\n")
        self._stdin.flush()

    def answer(self, *, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise AssertionError(f"process {self.pid} did not answer within {timeout}s")
            chunk = os.read(self._stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"process {self.pid} exited with {self.process.wait()}")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def publish(self, tag: str, count: int, *, timeout: float = 120) -> list[list[Any]]:
        """``[event_id, queued, partition, offset]`` of ``count`` revocations of ``tag``."""
        self.send(f"publish {tag} {count}")
        results: list[list[Any]] = json.loads(self.answer(timeout=timeout))
        return results

    def close(self) -> None:
        """Close the publisher and wait for the process; kill it if it does not go."""
        try:
            if self.process.poll() is None:
                self.send("exit")
                assert self.answer(timeout=30) == "closed"
                self.process.wait(timeout=30)
        finally:
            self.kill()
            self._selector.close()
            self._stdin.close()
            self._stdout.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def __enter__(self) -> PublisherProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
