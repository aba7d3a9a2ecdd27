"""The Kafka data source: one daemon thread owns a broadcast ``KafkaConsumer``.

Every instance reads every partition (``group_id=None`` + ``assign()``; no consumer group, no
committed offsets). At start each partition is positioned at the first record stamped after
:func:`replay_since` (``now - max_token_lifetime - leeway``, minus a margin for publishers'
clocks: older events cannot affect a live token), or at its end when there is none; the end
offsets are snapshotted, and the source reports VALID only once its position has reached
that snapshot on every partition. After a failure it reconnects with bounded exponential
backoff and resumes from its own positions.

With ``bootstrap="state"`` the first session loads the compacted state topic first and starts
each log partition right after its offset marker instead (:mod:`consumer_sdk._state_bootstrap`);
readiness still means reaching the log's end offsets snapshotted at start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import AuthorizationError, KafkaError, SaslAuthenticationFailedError

from consumer_sdk._errors import SourceError
from consumer_sdk._fetch import deliver, poll_ahead
from consumer_sdk._kafka_records import install as install_fast_records
from consumer_sdk._retention import check_retention
from consumer_sdk._settings import ConsumerSettings
from consumer_sdk._source import DataSource, UpdateSink
from consumer_sdk._stall import StallWatch, stall_after
from consumer_sdk._state_bootstrap import plan_bootstrap
from consumer_sdk._status import DataSourceState, SourceErrorKind
from revocation_events import closing_on_failure, drive_io_inline

__all__ = ["KafkaSource", "replay_since"]

_log = logging.getLogger("consumer_sdk")
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0
_PROBE_TIMEOUT_MS = 5_000
CLOCK_MARGIN = 300.0
"""Seconds the replay reaches back beyond what tokens need: the start is found by record
timestamps, which the publishing host's clock sets, and a host running behind stamps a
revocation older than it is. Replaying a few more minutes of events costs little."""


class _Failure(SourceError):
    """A failure this source recognises: its kind goes into the status with the text."""

    def __init__(self, kind: SourceErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _kind_of(
    exc: KafkaError, default: SourceErrorKind = SourceErrorKind.KAFKA_ERROR
) -> SourceErrorKind:
    """KAFKA_UNAUTHORIZED for a refusal of this client's credentials or ACLs, else
    ``default``: a wrong password or a missing ACL is fixed by a person, not by retrying."""
    if isinstance(exc, AuthorizationError | SaslAuthenticationFailedError):
        return SourceErrorKind.KAFKA_UNAUTHORIZED
    return default


def _unauthorized_topics(consumer: Any) -> Collection[str]:
    """The topics the last metadata answer denied (kafka-python keeps them, privately, in
    its cluster metadata; another kafka-python: none known)."""
    found = getattr(getattr(consumer, "_cluster", None), "unauthorized_topics", None)
    return found if isinstance(found, set | frozenset) else ()


def replay_since(now: float, max_token_lifetime: float, leeway: float) -> float:
    """The oldest record timestamp (seconds) whose event can still affect a live token."""
    return now - max_token_lifetime - leeway - CLOCK_MARGIN


class KafkaSource:
    """Replays then tails the revocation topic into an :class:`UpdateSink`."""

    def __init__(
        self,
        settings: ConsumerSettings,
        *,
        clock: Callable[[], float] = time.time,
        positions: Mapping[int, int] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._topic = settings.kafka.topic
        self._positions: dict[int, int] = dict(positions or {})
        self._ends: dict[int, int] = {}
        self._highwater: dict[int, int] = {}
        self._reconnects = 0
        self._retention: dict[str, Any] | None = None
        self._bootstrap: dict[str, Any] = {"mode": settings.bootstrap}
        self._next_probe = 0.0
        self._was_valid = False  # since the last failure: the next one starts the backoff over
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._watch: StallWatch | None = None

    def start(self, sink: UpdateSink) -> None:
        self._watch = StallWatch(
            sink,
            after=stall_after(self._settings.max_staleness, self._settings.poll_timeout_ms / 1000),
            stop=self._stop,
            clock=self._clock,
            name=f"revocast-stall-watch[{self._topic}]",
        )
        self._thread = threading.Thread(
            target=self._run, args=(sink,), name=f"revocast-sync[{self._topic}]", daemon=True
        )
        self._thread.start()
        self._watch.start()

    def close(self, timeout: float) -> None:
        """Stop the sync thread and the stall watch, waiting ``timeout`` s for both together."""
        deadline = time.monotonic() + timeout
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                _log.warning("revocation sync thread did not stop within %.1fs", timeout)
        if self._watch is not None:
            self._watch.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, Any]:
        positions = dict(self._positions)
        highwater = dict(self._highwater)
        return {
            "partitions": sorted(positions),
            "positions": positions,
            "start_end_offsets": dict(self._ends),
            "lag": {p: max(0, highwater.get(p, pos) - pos) for p, pos in positions.items()},
            "reconnects": self._reconnects,
            "retention": dict(self._retention or {}),
            "bootstrap": dict(self._bootstrap),
        }

    def after_fork(self) -> DataSource:
        return KafkaSource(self._settings, clock=self._clock, positions=self._positions)

    # -- the thread ------------------------------------------------------------------------

    def _run(self, sink: UpdateSink) -> None:
        backoff = _BACKOFF_MIN
        while not self._stop.is_set():
            consumer: Any = None
            try:
                consumer = self._connect()
                self._session(consumer, sink)
            except Exception as exc:  # the thread must survive anything; report and retry
                if self._was_valid:
                    # A session that caught up ends in a failure (it never returns on its
                    # own): earlier failures must not stretch this retry past max_staleness.
                    self._was_valid = False
                    backoff = _BACKOFF_MIN
                error = (
                    exc
                    if isinstance(exc, SourceError)
                    else SourceError(f"{type(exc).__name__}: {exc}")
                )
                kind = exc.kind if isinstance(exc, _Failure) else SourceErrorKind.SOURCE_ERROR
                _log.warning(
                    "revocation source interrupted (%s); retrying in %.1fs", error, backoff
                )
                sink.status(DataSourceState.INTERRUPTED, str(error), kind=kind)
                self._reconnects += 1
                self._stop.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
            finally:
                if consumer is not None:
                    try:
                        consumer.close(timeout_ms=1000)
                    except Exception:
                        _log.debug("closing the Kafka consumer failed", exc_info=True)

    def _connect(self) -> Any:
        s = self._settings
        config: dict[str, Any] = {
            "metadata_max_age_ms": int(s.partition_check_interval * 1000),
            "allow_auto_create_topics": False,
            "auto_offset_reset": "earliest",
            # kafka-python's own sensors cost ~10% of the CPU of every fetch round trip (one
            # per revocation when tailing) and nothing reads them; KafkaSettings.extra wins.
            "metrics_enabled": False,
            **s.kafka.client_config(KafkaConsumer.DEFAULT_CONFIG),
            "group_id": None,
            "enable_auto_commit": False,
        }
        try:
            # A constructor that fails (broker down) would leak its sockets on every retry.
            consumer = closing_on_failure(KafkaConsumer, config)
        except KafkaError as exc:
            kind = _kind_of(exc, default=SourceErrorKind.KAFKA_UNREACHABLE)
            raise _Failure(kind, f"cannot connect to Kafka: {exc}") from exc
        install_fast_records(consumer)  # same records, same CRC checks, half the cost
        drive_io_inline(consumer)  # this thread alone uses the consumer, and polls nonstop
        return consumer

    def _session(self, consumer: Any, sink: UpdateSink) -> bool:
        """Bootstrap and tail until stopped; return whether it ever caught up."""
        s = self._settings
        timeout_ms = s.kafka.request_timeout_ms
        try:
            tps = self._assign(consumer, set())
            if self._retention is None and tps:
                self._retention = check_retention(s)
            if not tps:
                if self._topic in _unauthorized_topics(consumer):
                    raise _Failure(
                        SourceErrorKind.KAFKA_UNAUTHORIZED,
                        f"not authorized to describe topic {self._topic!r} (ACLs)",
                    )
                raise _Failure(
                    SourceErrorKind.TOPIC_MISSING,
                    f"topic {self._topic!r} does not exist or has no partitions",
                )
            ends = consumer.end_offsets(list(tps.values()), timeout_ms=timeout_ms)
            self._ends = {tp.partition: off for tp, off in ends.items()}
            new = [tp for p, tp in tps.items() if p not in self._positions]
            if new and s.bootstrap == "state":
                new = self._position_from_state(consumer, sink, tps, new)
            self._position_new(consumer, new, ends)
            for p, tp in tps.items():
                if p in self._positions:
                    consumer.seek(tp, self._positions[p])
            caught_up = False
            next_check = time.monotonic() + s.partition_check_interval
            watch = self._watch
            while not self._stop.is_set():
                if caught_up and watch is not None:
                    watch.beat()  # (a stall in between is reported by the watch)
                for tp, records in poll_ahead(consumer, s.poll_timeout_ms):
                    deliver(sink, records)
                    self._positions[tp.partition] = records[-1].offset + 1
                if not caught_up and self._caught_up(consumer, tps):
                    caught_up = self._was_valid = True
                    sink.status(DataSourceState.VALID)
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + s.partition_check_interval
                    tps = self._assign(consumer, set(tps.values()))
                    self._track(consumer, tps)
                sink.tick()
            return caught_up
        except KafkaError as exc:
            raise _Failure(_kind_of(exc), f"Kafka: {type(exc).__name__}: {exc}") from exc
        finally:
            if self._watch is not None:
                self._watch.idle()

    def _assign(self, consumer: Any, known: set[TopicPartition]) -> dict[int, TopicPartition]:
        parts = consumer.partitions_for_topic(self._topic) or set()
        # Kafka never removes a partition: one missing from a metadata answer (a topic-level
        # error from a broker with a stale cache) is still read and still counts for
        # readiness; a deleted topic fails the end-offset probe of :meth:`_track` instead.
        tps = {tp.partition: tp for tp in known}
        tps.update((p, TopicPartition(self._topic, p)) for p in parts if p not in tps)
        new = [tp for tp in tps.values() if tp not in known]
        if known and new:
            consumer.assign(list(tps.values()))
            for tp in new:
                # Created after we started: everything on it is new to us.
                consumer.seek(tp, 0)
                self._positions[tp.partition] = 0
            _log.info("revocation topic gained partitions %s", sorted(tp.partition for tp in new))
        elif not known:
            consumer.assign(list(tps.values()))
        return tps

    def _position_from_state(
        self,
        consumer: Any,
        sink: UpdateSink,
        tps: Mapping[int, TopicPartition],
        new: list[TopicPartition],
    ) -> list[TopicPartition]:
        """Load snapshots, then the state topic, and seek each new partition where what was
        loaded is complete; return the partitions left to position as in log mode (see
        :mod:`consumer_sdk._state_bootstrap`)."""
        plan = plan_bootstrap(consumer, self._settings, sink, tps, new, stop=self._stop)
        for p, offset in plan.starts.items():
            consumer.seek(tps[p], offset)
            self._positions[p] = offset
        self._bootstrap = plan.stats
        return plan.rest

    def _position_new(
        self, consumer: Any, tps: list[TopicPartition], ends: Mapping[TopicPartition, int]
    ) -> None:
        if not tps:
            return
        s = self._settings
        if s.replay_from_beginning:
            for tp in tps:
                consumer.seek(tp, 0)
                self._positions[tp.partition] = 0
            return
        since_ms = int(replay_since(self._clock(), s.max_token_lifetime, s.leeway) * 1000)
        found = consumer.offsets_for_times(
            {tp: max(since_ms, 0) for tp in tps}, timeout_ms=s.kafka.request_timeout_ms
        )
        for tp in tps:
            hit = found.get(tp)
            offset = hit.offset if hit is not None else ends[tp]
            consumer.seek(tp, offset)
            self._positions[tp.partition] = offset

    def _caught_up(self, consumer: Any, tps: Mapping[int, TopicPartition]) -> bool:
        """Whether every partition's position has reached the end snapshotted at start.

        Positions are tracked from the records themselves; ``consumer.position()`` is asked
        only about lagging partitions, at most once a second (for gaps such as transaction
        markers at the end of a log): calling it on every poll stalled fetching.
        """
        behind = [p for p, end in self._ends.items() if p in tps and self._positions[p] < end]
        if not behind:
            return True
        now = time.monotonic()
        if now < self._next_probe:
            return False
        self._next_probe = now + 1.0
        timeout_ms = self._settings.kafka.request_timeout_ms
        for p in behind:
            pos = consumer.position(tps[p], timeout_ms=timeout_ms)
            if pos is not None and pos > self._positions[p]:
                self._positions[p] = pos
        return all(self._positions[p] >= self._ends[p] for p in behind)

    def _track(self, consumer: Any, tps: Mapping[int, TopicPartition]) -> None:
        """Ask the broker for every partition's end offset: the lag figure, and the liveness
        probe. ``poll()`` swallows connection errors, so without a request that must be
        answered a dead broker looks like a quiet topic and the status stays VALID forever."""
        timeout_ms = min(self._settings.kafka.request_timeout_ms, _PROBE_TIMEOUT_MS)
        ends = consumer.end_offsets(list(tps.values()), timeout_ms=timeout_ms)
        for tp, end in ends.items():
            self._highwater[tp.partition] = end
