"""Heartbeats: every SDK instance tells operators that it is alive and how far behind it is.

Every ``heartbeat_interval`` seconds a daemon thread of its own publishes one JSON record to
the heartbeat topic (``heartbeat_topic``, default ``<log>.heartbeats``), read by
``revocast status``. Key: the instance id (a fresh UUID per SDK instance, and again in a
forked child). Value (version 1)::

    {"v": 1, "service": "orders", "instance": "<uuid>", "host": "web-1", "pid": 4242,
     "topic": "<log>", "status": "valid", "status_since": 1699999958.0, "status_age": 42.0,
     "error_kind": null, "interval": 10.0, "sent_at": 1700000000.0, "last_event_age": 3.2,
     "offsets": {"0": 120}, "end_offsets": {"0": 121},
     "entries": {"jti": 7, ...}, "skipped": {"bad_signature": 1}, "failures": 0}

``status_since`` is when the instance entered ``status``, on its host's wall clock (as
``sent_at``): for people, to match the host's logs. ``status_age`` is how long it had been in
``status`` when the heartbeat was sent, as the SDK itself measures it against
``max_staleness`` (:meth:`~consumer_sdk._status.StatusProvider.elapsed`: the monotonic
clock, unless the wall clock says longer): a duration, so a reader adds the time since it
heard the heartbeat and needs no agreement between the hosts' clocks; a step of the host's
wall clock back cannot shorten it (a step forward lengthens it, as it does the SDK's own
bound). Both fields are additive to version 1: readers treat a heartbeat without them (an
older SDK) as not saying since when. ``error_kind`` is the kind of the instance's last error
(a :class:`~consumer_sdk.SourceErrorKind` value such as ``"kafka_unreachable"``; ``null``:
none), never its text, which may name brokers, SASL users or file paths and stays in the
instance's log; additive to version 1 (absent from an older SDK's heartbeat).

``offsets`` are the next log offsets to apply per partition (so lag = log end - offset);
``end_offsets`` are the log ends the instance last saw; ``last_event_age`` is seconds since
it last applied an event (``null``: none yet); ``failures`` counts heartbeats that could not
be published since the last one that was. A closing instance sends a last heartbeat with
status ``off``. Heartbeats are never on the request path and never fatal: failures are
counted and logged. Nothing is created implicitly: while the topic is missing, this logs
once and keeps trying (``revocast status --create`` creates it).
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from consumer_sdk._settings import ConsumerSettings
from consumer_sdk._status import SourceStatus, StatusProvider
from revocation_events import (
    KafkaUnreachableError,
    close_producer,
    closing_on_failure,
    require_reachable,
)

__all__ = ["HEARTBEAT_VERSION", "Heartbeat", "HeartbeatSubject", "heartbeat_topic"]

_log = logging.getLogger("consumer_sdk.heartbeat")

HEARTBEAT_VERSION = 1
_MAX_BLOCK_MS = 1_000


def heartbeat_topic(settings: ConsumerSettings) -> str:
    return settings.heartbeat_topic or f"{settings.kafka.topic}.heartbeats"


class HeartbeatSubject(Protocol):
    """What a heartbeat reports on (a :class:`~consumer_sdk.Revocast`)."""

    @property
    def status(self) -> SourceStatus: ...

    @property
    def status_provider(self) -> StatusProvider:
        """Measures how long :attr:`status` has lasted, on the subject's own clocks."""
        ...

    def stats(self) -> dict[str, Any]: ...


ProducerFactory = Callable[[dict[str, Any]], Any]


def _kafka_producer(config: dict[str, Any]) -> Any:
    require_reachable(config)
    return closing_on_failure(KafkaProducer, config)


class Heartbeat:
    """Publishes heartbeats of ``subject`` from its own daemon thread with its own producer."""

    def __init__(
        self,
        settings: ConsumerSettings,
        subject: HeartbeatSubject,
        *,
        clock: Callable[[], float] = time.time,
        producer_factory: ProducerFactory = _kafka_producer,
    ) -> None:
        self.instance_id = str(uuid.uuid4())
        self._settings = settings
        self._subject = subject
        self._clock = clock
        self._factory = producer_factory
        self.topic = heartbeat_topic(settings)
        self._host = socket.gethostname()
        self._producer: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.sent = 0
        self.failures: Counter[str] = Counter()
        self._pending_failures = 0
        self._last_failure: str | None = None
        self._ack_timeout = max(1.0, min(5.0, settings.heartbeat_interval))

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"revocast-heartbeat[{self.topic}]", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Tell the thread to send its last heartbeat and stop, without waiting for it."""
        self._stop.set()

    def close(self, timeout: float) -> None:
        """Stop the thread; it sends a last heartbeat (the subject's status is OFF by now)
        and closes its producer. Waits up to ``timeout`` seconds."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.warning("heartbeat thread did not stop within %.1fs", timeout)

    def after_fork(self) -> Heartbeat:
        """A new heartbeat (new instance id, no producer) for a forked child."""
        return Heartbeat(
            self._settings, self._subject, clock=self._clock, producer_factory=self._factory
        )

    def value(self) -> dict[str, Any]:
        """The heartbeat document as it would be sent now."""
        stats = self._subject.stats()
        status = self._subject.status
        now = self._clock()
        positions: Mapping[int, int] = stats.get("positions") or {}
        lag: Mapping[int, int] = stats.get("lag") or {}
        return {
            "v": HEARTBEAT_VERSION,
            "service": self._settings.service_name,
            "instance": self.instance_id,
            "host": self._host,
            "pid": os.getpid(),
            "topic": self._settings.kafka.topic,
            "status": status.state.value,
            "status_since": status.since,
            "status_age": max(0.0, self._subject.status_provider.elapsed(status)),
            "error_kind": None if status.error_kind is None else status.error_kind.value,
            "interval": self._settings.heartbeat_interval,
            "sent_at": now,
            "last_event_age": None
            if status.last_event_at is None
            else max(0.0, now - status.last_event_at),
            "offsets": {str(p): off for p, off in positions.items()},
            "end_offsets": {str(p): off + lag.get(p, 0) for p, off in positions.items()},
            "entries": dict(stats.get("entries") or {}),
            "skipped": dict(stats.get("skipped") or {}),
            "failures": self._pending_failures,
        }

    def beat(self) -> bool:
        """Publish one heartbeat and wait for its acknowledgement; never raises. Called by
        the heartbeat thread (or by tests driving a heartbeat that was not started)."""
        try:
            if self._producer is None:
                self._producer = self._factory(self._producer_config())
            body = json.dumps(self.value(), separators=(",", ":"), sort_keys=True).encode()
            future = self._producer.send(self.topic, key=self.instance_id.encode(), value=body)
            future.get(timeout=self._ack_timeout)
        except Exception as exc:  # a heartbeat must never take the SDK down
            self._failed(exc)
            return False
        self.sent += 1
        self._pending_failures = 0
        if self._last_failure is not None:
            _log.info("heartbeats to %r resumed", self.topic)
            self._last_failure = None
        return True

    def _producer_config(self) -> dict[str, Any]:
        interval_ms = int(self._settings.heartbeat_interval * 1000)
        return {
            **self._settings.kafka.client_config(KafkaProducer.DEFAULT_CONFIG),
            "client_id": f"{self._settings.kafka.client_id}-heartbeat",
            "acks": 1,
            "linger_ms": 0,
            "retries": 0,
            "enable_idempotence": False,
            "allow_auto_create_topics": False,
            # Bounds the wait for metadata, so a missing topic cannot hold up close().
            "max_block_ms": max(200, min(_MAX_BLOCK_MS, interval_ms)),
        }

    def _failed(self, exc: Exception) -> None:
        if isinstance(exc, KafkaTimeoutError):
            reason = "topic_missing_or_timeout"
            message = (
                f"heartbeat topic {self.topic!r} is missing or Kafka does not answer; "
                "create it with 'revocast status --create' (heartbeats keep retrying)"
            )
        elif isinstance(exc, KafkaUnreachableError | KafkaError):
            reason = "kafka"
            message = f"heartbeat not published: {exc}"
        else:
            reason = "error"
            message = f"heartbeat not published: {type(exc).__name__}: {exc}"
        self.failures[reason] += 1
        self._pending_failures += 1
        # Once per kind of failure: a missing topic must not flood the log every interval.
        if reason != self._last_failure:
            _log.warning(message)
            self._last_failure = reason
        else:
            _log.debug(message)

    def _run(self) -> None:
        # The thread owns the producer: created, used and closed here only.
        interval = self._settings.heartbeat_interval
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                self.beat()
                self._stop.wait(max(0.0, interval - (time.monotonic() - started)))
            if self._producer is not None and self._last_failure is None:
                self.beat()
        finally:
            producer, self._producer = self._producer, None
            if producer is not None:
                try:
                    close_producer(producer, timeout=1.0)
                except Exception:  # closing is best effort
                    _log.debug("closing the heartbeat producer failed", exc_info=True)
