"""The boundary with kafka-python: one lazily created idempotent producer, errors translated.

The producer is created on first use, not in the constructor: kafka-python's constructor
blocks until it reaches a broker, and the outbox must accept events while Kafka is down.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from producer._errors import PublishError
from producer._settings import PublisherSettings
from revocation_events import (
    EncodedEvent,
    KafkaUnreachableError,
    close_producer,
    closing_on_failure,
)
from revocation_events import require_reachable as _require_reachable

__all__ = ["Ack", "KafkaSender", "closing_on_failure", "producer_config", "require_reachable"]

log = logging.getLogger("producer")


@dataclass(frozen=True, slots=True)
class Ack:
    partition: int
    offset: int


def producer_config(settings: PublisherSettings) -> dict[str, Any]:
    """kafka-python options: acks=all + idempotence, every wait bounded by the settings."""
    max_block_ms = int(settings.max_block * 1000)
    config: dict[str, Any] = settings.kafka.client_config(KafkaProducer.DEFAULT_CONFIG)
    config.update(
        {
            "acks": "all",
            "enable_idempotence": True,
            "delivery_timeout_ms": int(settings.delivery_timeout * 1000),
            "max_block_ms": max_block_ms,
            "bootstrap_timeout_ms": max_block_ms,
            "linger_ms": 0,
            "allow_auto_create_topics": False,
        }
    )
    config.update(settings.producer_options)
    # kafka-python refuses delivery_timeout_ms < linger_ms + request_timeout_ms; keep the
    # user's delivery bound and shorten the per-request timeout to fit inside it.
    room = config["delivery_timeout_ms"] - config["linger_ms"]
    if room <= 0:
        raise PublishError("delivery_timeout must be longer than linger_ms")
    config["request_timeout_ms"] = min(config["request_timeout_ms"], room)
    return config


class KafkaSender:
    """Thread-safe: kafka-python's producer is; creation and reset are guarded by a lock."""

    def __init__(self, settings: PublisherSettings) -> None:
        self.topic = settings.kafka.topic
        self._config = producer_config(settings)
        self._lock = threading.Lock()
        self._producer: KafkaProducer | None = None
        self._closed = False

    def _get(self) -> KafkaProducer:
        with self._lock:
            # Creating the producer is I/O under a lock on purpose: concurrent callers
            # would otherwise each open a producer; they would wait for the broker anyway.
            if self._closed:
                raise PublishError("publisher is closed")
            if self._producer is None:
                require_reachable(self._config)
                try:
                    self._producer = closing_on_failure(KafkaProducer, self._config)
                except KafkaError as exc:
                    raise PublishError(f"cannot connect to Kafka: {exc}") from exc
                except (ValueError, TypeError) as exc:  # an option's value kafka-python refuses
                    raise PublishError(
                        f"kafka-python refused the producer options: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._producer

    def send(self, records: Sequence[EncodedEvent]) -> list[Any]:
        """Hand records to the producer in order; return their futures."""
        producer = self._get()
        futures = []
        for rec in records:
            try:
                futures.append(
                    producer.send(
                        self.topic, value=rec.value, key=rec.key, headers=list(rec.headers)
                    )
                )
            except KafkaError as exc:
                raise PublishError(f"cannot send to topic {self.topic!r}: {exc}") from exc
            except (ValueError, TypeError) as exc:  # a topic or record kafka-python refuses
                raise PublishError(
                    f"kafka-python refused to send to topic {self.topic!r}: {exc}"
                ) from exc
        return futures

    @staticmethod
    def wait(
        futures: Sequence[Any],
        timeout: float,
        *,
        heartbeat: Callable[[], object] | None = None,
        every: float = 1.0,
    ) -> list[Ack | PublishError]:
        """Wait for every future, all within one deadline, calling ``heartbeat`` at least
        every ``every`` seconds while one is still in flight."""
        deadline = time.monotonic() + timeout
        results: list[Ack | PublishError] = []
        for future in futures:
            while True:
                left = max(0.0, deadline - time.monotonic())
                step = left if heartbeat is None else min(left, every)
                try:
                    meta = future.get(timeout=step)
                except KafkaError as exc:
                    if heartbeat is not None and not future.is_done and step < left:
                        heartbeat()
                        continue
                    err = PublishError(f"not acknowledged by Kafka: {exc}")
                    err.__cause__ = exc
                    results.append(err)
                else:
                    results.append(Ack(partition=meta.partition, offset=meta.offset))
                break
        return results

    def reset(self) -> None:
        """Drop the producer after a failure; the next send starts a fresh idempotent session."""
        with self._lock:
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_quietly(producer, 0)

    def close(self, timeout: float) -> None:
        with self._lock:
            self._closed = True
            producer, self._producer = self._producer, None
        if producer is not None:
            _close_quietly(producer, timeout)


def require_reachable(config: dict[str, Any], timeout: float = 1.0) -> None:
    """:func:`revocation_events.require_reachable`, raising :class:`PublishError`."""
    try:
        _require_reachable(config, timeout)
    except KafkaUnreachableError as exc:
        raise PublishError(str(exc)) from None


def _close_quietly(producer: KafkaProducer, timeout: float) -> None:
    # Closing must not mask the caller's outcome, nor leave the producer half open.
    close_producer(producer, timeout)
