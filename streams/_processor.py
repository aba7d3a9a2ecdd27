"""The worker's logic without faust: records in, table updates and output records out.

The faust agent feeds every log record and every tick to one :class:`Processor` in partition
order, produces the returned :class:`Output` records and hands the processor each send's
future (:meth:`Processor.sent`); the rules table hands it its changelog sends too. An offset
marker for offset *o* comes out of a tick only once every one of those sends that an offset
up to *o* caused has been acknowledged by the broker, and only for offsets processed one
after the other from where the worker was told to resume (:meth:`Processor.arm`).

The table also remembers, per partition, the last marker it is in step with
(:meth:`Processor.synced`): when a newly assigned partition's state topic has another one (a
new app id, a deleted or lagging changelog), the worker reads the state partition and the
processor merges it into the table (:meth:`Processor.seed`) before it handles anything else
of that partition, so later events are judged against every winner the state topic holds.

Markers, and the table's record of them, name the incarnation of the log (its topic id,
KIP-516). A table whose record names another one holds the rules of a log deleted since and
recreated under the same name: :meth:`Processor.restart` empties that partition of it.
"""

from __future__ import annotations

import heapq
import json
import logging
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Protocol

from revocation_events import (
    SIGNATURE_HEADER,
    Event,
    EventCodec,
    MalformedEventError,
    SubjectUnblocked,
)
from streams._records import (
    Headers,
    Output,
    decode_stored_rule,
    encode_stored_rule,
    event_record,
    marker_record,
    signature_of,
    state_key,
    stored_expiry,
    tombstone,
)
from streams._rules import Merge, Outcome, Rule, merge
from streams._windows import WindowCounts, window_key, window_start

__all__ = ["SEED_STEP", "Pending", "Processor"]

logger = logging.getLogger("streams")

_EARLIEST = datetime(1, 1, 1, tzinfo=UTC).timestamp()
_LATEST = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()
"""Record timestamps a window can hold: its start and end must be datetimes."""
_NEVER_EXPIRE = ("sub-block:", "kid:")
"""Rule keys whose table entries may come from workers that expired blocks and revoked
keys by the ``expires_at`` they carried (only an unblock expires among them)."""

_SYNCED = "__synced__"
"""Table key (after ``<partition>|``) of the last marker the table is in step with; rule keys
never start with ``__``."""
_SYNCED_BYTES = _SYNCED.encode()
SEED_STEP = 2_000
"""State records :meth:`Processor.seed_step` merges per call (the agent yields between)."""


class Pending(Protocol):
    """A send in flight: an :class:`asyncio.Future` that resolves when the broker
    acknowledges the record (aiokafka's, or faust's ``FutureMessage``)."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> BaseException | None: ...


def _table_key(partition: int, key: str) -> bytes:
    return f"{partition}|{key}".encode()


def _split_table_key(table_key: bytes) -> tuple[int, str]:
    partition, _, key = table_key.decode().partition("|")
    return int(partition), key


def _is_synced_key(table_key: bytes) -> bool:
    return table_key.partition(b"|")[2] == _SYNCED_BYTES


class Processor:
    """Applies revocation records to the rules table and says what to publish.

    ``rules`` maps ``<partition>|<rule key>`` to the stored winner; ``windows`` maps
    ``<partition>|<window start>`` to its counts. Both are faust tables in the worker and
    plain dicts in tests. ``clock`` returns epoch seconds.

    ``expiry_margin`` (seconds) keeps every rule that much longer past its ``expires_at``
    before it is tombstoned (and still accepts events that late): an SDK with a ``leeway``
    keeps its entries ``leeway`` seconds past ``expires_at``, and one bootstrapping from the
    state topic in that interval must still find them. With a margin at least the SDKs'
    leeway, the state topic holds every rule a log replay would.

    Offset markers. A log partition is *covered* up to offset *o* when every record from
    its resume point (:meth:`arm`; offset 0 unless told otherwise) up to *o* went through
    :meth:`on_record`, one after the other. A record arriving past the next expected offset
    (faust skipped some) stops the coverage until the partition is armed again. Each tick
    queues the covered offset behind the sends registered so far (:meth:`sent`,
    :meth:`track`); once they are all acknowledged, a later tick writes the marker. A send
    that fails (or a publish that raised: :meth:`resync`) drops the queued markers behind
    it, and the next tick re-publishes every live rule of the partition and re-writes it to
    the table, so its changelog holds it too; markers resume behind that repair.

    Seeding. Writing marker *o* also records *o* in the table (key ``<partition>|__synced__``,
    so it lives and dies with the table's changelog): every effect up to *o* is then in the
    table. On assignment the worker compares it with the state topic's last marker; when they
    differ it hands the state partition's records to :meth:`seed`, and they are merged into
    the table (verified like log records; no outputs: the state topic has them) before the
    partition's next record or tick. A partition whose state could not be read is
    :meth:`hold`-ed: nothing of it is processed (no state record, no marker) until it is
    assigned again; SDKs then read the log after the last marker, as they would anyway. A
    partition whose seeding a rebalance cuts short is held until it is armed again.
    """

    def __init__(
        self,
        *,
        codec: EventCodec,
        log_topic: str,
        rules: MutableMapping[bytes, bytes],
        windows: MutableMapping[bytes, bytes],
        window_seconds: int = 60,
        window_grace_seconds: float = 5.0,
        alert_thresholds: Mapping[str, int] | None = None,
        clock: Callable[[], float],
        expiry_margin: float = 0.0,
        topic_id: uuid.UUID | None = None,
    ) -> None:
        if expiry_margin < 0:
            raise ValueError(f"expiry_margin must be >= 0, got {expiry_margin}")
        self._codec = codec
        self._log_topic = log_topic
        self._rules = rules
        self._windows = windows
        self._size = window_seconds
        self._grace = window_grace_seconds
        self._thresholds = dict(alert_thresholds or {})
        self._clock = clock
        self._margin = expiry_margin
        self.topic_id = topic_id
        """The id of the log's incarnation (``None``: the broker gives none), stamped on
        markers."""
        self.counters: Counter[str] = Counter()
        self._expiry: dict[int, list[tuple[float, bytes]]] = {}
        self._next: dict[int, int] = {}
        """Per partition, the offset whose processing extends the coverage (default 0)."""
        self._holes: set[int] = set()
        self._unverifiable: set[int] = set()
        """Partitions with a record signed by a key this worker does not know: their
        coverage stops before it (see :meth:`_apply`) until they are armed again."""
        self._inflight: dict[int, deque[Pending | int]] = {}
        """Per partition, tracked sends and queued marker offsets, in the order made."""
        self._queued: dict[int, int] = {}
        self._ready: dict[int, int] = {}
        self._marked: dict[int, int] = {}
        self._broken: set[int] = set()
        self._seeds: dict[int, deque[tuple[bytes, bytes | None]]] = {}
        self._held: set[int] = set()
        self._cut: set[int] = set()
        """Partitions whose seeding a rebalance cut short: held until armed again."""
        self._restarts: set[int] = set()
        """Partitions whose table entries are of a deleted log: emptied before anything else."""
        self._unmarked: set[int] = set()
        """Partitions whose state partition holds a deleted log's rules: no markers."""

    def forget_partitions(self) -> None:
        """Drop in-memory indexes and marker bookkeeping after a rebalance; the indexes are
        rebuilt from the tables, and the partitions must be armed again for markers."""
        self._expiry.clear()
        self._next.clear()
        self._holes.clear()
        self._unverifiable.clear()
        self._inflight.clear()
        self._queued.clear()
        self._ready.clear()
        self._marked.clear()
        self._broken.clear()
        # faust does not wait for the agent's current event (``stream_wait_empty=False``):
        # one paused between two seed slices goes on after this, and must not be judged
        # against a half-seeded table. The worker arms the partition again once it is
        # assigned and has decided about seeding it.
        self._cut.update(self._seeds)
        self._cut.update(self._restarts)
        self._seeds.clear()
        self._restarts.clear()
        self._unmarked.clear()
        self._held.clear()

    def synced(self, partition: int) -> int | None:
        """The last offset marker of ``partition`` the table is known to hold every effect
        of, or ``None`` (also when that marker was of another incarnation of the log)."""
        stored = self._rules.get(_table_key(partition, _SYNCED))
        if stored is None or self.other_incarnation(partition):
            return None
        return int(json.loads(stored)["marker"])

    def other_incarnation(self, partition: int) -> bool:
        """Whether the table's entries of ``partition`` come from another incarnation of the
        log (its record of the last marker names another topic id). A record without an id
        was written before markers named one: it is taken to be of this log."""
        stored = self._rules.get(_table_key(partition, _SYNCED))
        if stored is None or self.topic_id is None:
            return False
        named = json.loads(stored).get("topic_id")
        return named is not None and named != str(self.topic_id)

    def restart(self, partition: int, *, state_usable: bool) -> None:
        """The log was deleted and recreated: before anything else of ``partition`` is
        processed, drop its table entries (the old log's rules) and any seed queued for it;
        the worker re-reads the new log from its start (:meth:`arm`).

        ``state_usable=False``: the state partition still holds the old log's rule records,
        which no later marker may vouch for (SDKs would load them as the new log's): write
        none for ``partition`` until it is assigned again. SDKs replay it from the log, as
        they do while its last marker names the old log."""
        self._seeds.pop(partition, None)
        self._restarts.add(partition)
        if not state_usable:
            self._unmarked.add(partition)

    def seed(self, partition: int, records: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Merge these state records of ``partition`` (value, ``revocast-sig`` header) into
        the table before anything else of the partition is processed. They replace records
        still pending from an earlier read (those merged so far stay merged)."""
        self._seeds[partition] = deque(records)

    def hold(self, partition: int) -> None:
        """The state of ``partition`` is unknown: process none of it until it is assigned
        again (:meth:`forget_partitions`)."""
        self._held.add(partition)

    def seeding(self, partition: int) -> bool:
        """Whether state records of ``partition`` are still to be merged."""
        return partition in self._seeds

    def seed_step(self, partition: int, budget: int = SEED_STEP) -> None:
        """Merge up to ``budget`` of the pending state records of ``partition``."""
        queue = self._seeds.get(partition)
        if queue is None:
            return
        now = self._now()
        while queue and budget > 0:
            budget -= 1
            value, signature = queue.popleft()
            try:
                event = self._decode(value, signature)
            except MalformedEventError as exc:
                self.counters[f"seed_skipped.{exc.reason}"] += 1
                logger.warning("skipped a state record of partition %d: %s", partition, exc)
                continue
            # A duplicate is written again, as a replayed log record is: a rebalance may have
            # dropped the repair of this entry's failed changelog write, and the next marker
            # is recorded as synced once this write lands.
            result, _ = self._merge(partition, Rule(event, value, signature), now)
            if result.outcome is Outcome.REPLACED:
                self.counters["seeded"] += 1
        if not queue:
            del self._seeds[partition]
            logger.info("log partition %d: rules table seeded from the state topic", partition)

    def _ready_for(self, partition: int) -> bool:
        """Finish restarting and seeding ``partition``; false while it is held."""
        if partition in self._held or partition in self._cut:
            return False
        if partition in self._restarts:
            self._restarts.discard(partition)
            self._drop_entries(partition)
        while partition in self._seeds:
            self.seed_step(partition)
        return True

    def _drop_entries(self, partition: int) -> None:
        prefix = f"{partition}|".encode()
        dropped = [k for k in list(self._rules.keys()) if k.startswith(prefix)]
        for table_key in dropped:
            del self._rules[table_key]
        self._expiry.pop(partition, None)
        self.counters["log_recreated"] += 1
        logger.warning(
            "log partition %d: dropped %d table entries of a deleted incarnation of the log",
            partition,
            len(dropped),
        )

    def arm(self, partition: int, start: int) -> None:
        """The worker re-reads ``partition`` from offset ``start``: cover it from there."""
        self._next[partition] = start
        self._holes.discard(partition)
        self._unverifiable.discard(partition)
        self._cut.discard(partition)
        self._queued.pop(partition, None)
        self._ready.pop(partition, None)
        self._marked.pop(partition, None)
        queue = self._inflight.get(partition)
        if queue:
            self._inflight[partition] = deque(e for e in queue if not isinstance(e, int))

    def sent(self, out: Output, pending: Pending) -> None:
        """``out`` was handed to the producer; ``pending`` resolves when it is written."""
        if out.sink == "state" and out.partition is not None and not out.is_marker:
            self.track(out.partition, pending)

    def track(self, partition: int, pending: Pending) -> None:
        """A write the next marker of ``partition`` must wait for (a state record, a
        changelog record of the rules table)."""
        self._inflight.setdefault(partition, deque()).append(pending)
        self._drain(partition)

    def outstanding(self) -> list[Pending]:
        """The tracked sends not yet resolved."""
        return [
            entry
            for queue in self._inflight.values()
            for entry in queue
            if not isinstance(entry, int) and not entry.done()
        ]

    def resync(self, partition: int) -> None:
        """Publishing the outputs of ``partition`` failed: repair it on its next tick."""
        self._broken.add(partition)

    def on_record(
        self,
        *,
        partition: int,
        offset: int,
        timestamp: float,
        value: bytes | None,
        headers: Headers,
    ) -> list[Output]:
        """Process one log record."""
        if not self._ready_for(partition):
            self.counters["held_records"] += 1
            return []
        outputs = self._apply(partition, offset, timestamp, value, headers)
        self._advance(partition, offset)
        return outputs

    def _apply(
        self, partition: int, offset: int, timestamp: float, value: bytes | None, headers: Headers
    ) -> list[Output]:
        signature = signature_of(headers)
        try:
            event = self._decode(value, signature)
        except MalformedEventError as exc:
            self.counters[f"skipped.{exc.reason}"] += 1
            logger.warning("skipped record %s@%d: %s: %s", partition, offset, exc.reason, exc)
            if exc.reason == "unknown_key" and partition not in self._unverifiable:
                # Services that already trust that key (a rotation half rolled out) apply
                # this event from the log: a marker past it would make the ones bootstrapping
                # from the state topic skip it. Markers stay before it instead.
                self._unverifiable.add(partition)
                self.counters["unverifiable_holds"] += 1
                logger.error(
                    "log partition %d: record %d is signed by a key this worker does not "
                    "know: offset markers stay before it until the worker restarts with the "
                    "key in REVOCAST_EVENT_KEYS (%s)",
                    partition,
                    offset,
                    exc,
                )
            return []
        assert value is not None  # decode() refuses tombstones
        result, previous = self._merge(partition, Rule(event, value, signature), self._now())
        self.counters[result.outcome.value] += 1
        outputs: list[Output] = []
        if result.outcome is Outcome.REPLACED or result.outcome is Outcome.DUPLICATE:
            # A new winner, even an unblock that wins already expired (it still orders older
            # blocks): as a record, so that readers skipping tombstones see it lift the
            # block. A duplicate re-asserts the winner: after a crash the table changelog may
            # hold it while the state topic does not, and this replayed event is the only
            # trace of it.
            assert result.winner is not None
            outputs.append(event_record(result.winner, partition))
            if previous is not None and state_key(previous) != state_key(result.winner):
                # After the record of the event that beats it: a reader finds one or the
                # other, and a paused writer's late tombstone here removes only an event
                # it saw beaten.
                outputs.append(tombstone(state_key(previous), partition))
        if result.outcome is not Outcome.DUPLICATE:
            outputs.extend(self._count(partition, offset, timestamp, event.type, event.reason))
        return outputs

    def _decode(self, value: bytes | None, signature: bytes | None) -> Event:
        return self._codec.decode(
            value, () if signature is None else ((SIGNATURE_HEADER, signature),)
        )

    def _merge(self, partition: int, rule: Rule, now: float) -> tuple[Merge, Rule | None]:
        """Merge ``rule`` into its table entry: a new winner is written and indexed for the
        sweep; a duplicate of the winner is written again (after a rebalance the in-memory
        table may hold a winner whose changelog write failed after the worker stopped
        tracking it). Also returns the entry's winner before the merge."""
        table_key = _table_key(partition, rule.key)
        stored = self._rules.get(table_key)
        existing = None if stored is None else decode_stored_rule(stored)
        result = merge(existing, rule, now)
        if result.outcome is Outcome.REPLACED:
            assert result.winner is not None
            self._rules[table_key] = encode_stored_rule(result.winner)
            self._index(partition, table_key, result.winner.expires_at)
        elif result.outcome is Outcome.DUPLICATE:
            assert stored is not None
            self._rules[table_key] = stored
        return result, existing

    def _advance(self, partition: int, offset: int) -> None:
        if partition in self._unverifiable:
            return
        expected = self._next.get(partition, 0)
        if offset == expected:
            self._next[partition] = offset + 1
        elif offset > expected and partition not in self._holes:
            self._holes.add(partition)
            self.counters["coverage_holes"] += 1
            logger.error(
                "log partition %d: record %d arrived while %d was expected; its offset "
                "marker stays before %d until the partition is assigned again",
                partition,
                offset,
                expected,
                expected,
            )

    def on_tick(self, partition: int) -> list[Output]:
        """Sweep expired rules, repair a partition whose writes failed, close finished
        windows, and write the offset marker that became safe."""
        if not self._ready_for(partition):
            return []
        self._drain(partition)
        if partition not in self._broken:
            covered = self._next.get(partition, 0) - 1
            if covered > self._queued.get(partition, -1):
                self._queued[partition] = covered
                self._inflight.setdefault(partition, deque()).append(covered)
                self._drain(partition)
        now = self._now()
        outputs = self._sweep(partition, now)
        if partition in self._broken:
            self._broken.discard(partition)
            outputs.extend(self._repair(partition, now))
        outputs.extend(self._close_windows(partition, self._clock()))
        ready = self._ready.pop(partition, None)
        if partition in self._unmarked:
            ready = None
        if ready is not None and ready > self._marked.get(partition, -1):
            outputs.append(marker_record(self._log_topic, partition, ready, topic_id=self.topic_id))
            self._marked[partition] = ready
            # Every effect up to ``ready`` is in the table (its changelog writes were
            # acknowledged before the marker became ready).
            doc: dict[str, object] = {"marker": ready}
            if self.topic_id is not None:
                doc["topic_id"] = str(self.topic_id)
            synced = json.dumps(doc, separators=(",", ":")).encode()
            self._rules[_table_key(partition, _SYNCED)] = synced
        return outputs

    def _drain(self, partition: int) -> None:
        """Retire the resolved sends at the head of the queue; a marker offset reaching the
        head is safe to write."""
        queue = self._inflight.get(partition)
        while queue:
            head = queue[0]
            if isinstance(head, int):
                queue.popleft()
                self._ready[partition] = head
                continue
            if not head.done():
                return
            queue.popleft()
            error = None if head.cancelled() else head.exception()
            if head.cancelled() or error is not None:
                self.counters["failed_writes"] += 1
                logger.warning(
                    "a write for log partition %d failed (%r): its markers wait for a repair",
                    partition,
                    error,
                )
                # Markers queued behind the failed send promised its effect.
                queue = self._inflight[partition] = deque(
                    e for e in queue if not isinstance(e, int)
                )
                self._queued.pop(partition, None)
                self._broken.add(partition)

    def _now(self) -> float:
        """The clock minus the margin: rules expire ``expiry_margin`` after ``expires_at``."""
        return self._clock() - self._margin

    def _index(self, partition: int, table_key: bytes, expires_at: float | None) -> None:
        heap = self._expiry.get(partition)
        if heap is not None and expires_at is not None:
            heapq.heappush(heap, (expires_at, table_key))

    def _sweep(self, partition: int, now: float) -> list[Output]:
        heap = self._expiry.get(partition)
        if heap is None:
            prefix = f"{partition}|".encode()
            heap = []
            for table_key, stored in list(self._rules.items()):
                if not table_key.startswith(prefix) or _is_synced_key(table_key):
                    continue
                expires_at = stored_expiry(stored)
                if expires_at is not None:
                    heap.append((expires_at, table_key))
            heapq.heapify(heap)
            self._expiry[partition] = heap
        outputs: list[Output] = []
        while heap and heap[0][0] <= now:
            expires_at, table_key = heapq.heappop(heap)
            current = self._rules.get(table_key)
            # Entries are never removed from the heap on replace: skip the stale ones.
            if current is None or stored_expiry(current) != expires_at:
                continue
            key = _split_table_key(table_key)[1]
            expired = decode_stored_rule(current)
            if key.startswith(_NEVER_EXPIRE) and expired.expires_at is None:
                continue  # a block or revoked key stored with the ``expires_at`` it carried
            del self._rules[table_key]
            self.counters["expired_rules"] += 1
            if isinstance(expired.event, SubjectUnblocked):
                # Kept: it still orders every older block of the subject, and a record of
                # one may come back (written late by a paused worker, or its tombstone lost
                # in a crash).
                continue
            outputs.append(tombstone(state_key(expired), partition))
            # The rule's record as workers before per-event keys wrote it (and
            # ``revocast rebuild-state``): an event this expired winner beats.
            outputs.append(tombstone(key, partition))
        return outputs

    def _repair(self, partition: int, now: float) -> list[Output]:
        """Re-publish every live rule of ``partition`` and re-write it to the table (the
        in-memory table holds every effect processed so far; a failed changelog write is
        repaired by writing the entry again)."""
        prefix = f"{partition}|".encode()
        outputs: list[Output] = []
        for table_key, stored in list(self._rules.items()):
            if table_key.startswith(prefix) and not _is_synced_key(table_key):
                expires_at = stored_expiry(stored)
                if expires_at is None or expires_at > now:
                    self._rules[table_key] = stored
                    outputs.append(event_record(decode_stored_rule(stored), partition))
        self.counters["republished"] += len(outputs)
        return outputs

    def _count(
        self, partition: int, offset: int, timestamp: float, kind: str, reason: str
    ) -> list[Output]:
        if not _EARLIEST <= timestamp <= _LATEST - self._size:
            # The record timestamp is not signed and may be anything Kafka accepts: one
            # outside the calendar cannot name a window (its alert and stats would raise).
            self.counters["bad_timestamps"] += 1
            logger.warning(
                "record %s@%d has timestamp %r: counted in the worker clock's window",
                partition,
                offset,
                timestamp,
            )
            timestamp = self._clock()
        start = window_start(timestamp, self._size)
        key = window_key(partition, start)
        stored = self._windows.get(key)
        window = WindowCounts(start) if stored is None else WindowCounts.decode(stored)
        if offset <= window.offset:
            # Redelivered after a rebalance or crash: this window already counted it.
            self.counters["recounts_avoided"] += 1
            return []
        window.offset = offset
        total = window.add(kind, reason)
        outputs: list[Output] = []
        threshold = self._thresholds.get(kind)
        if threshold is not None and total > threshold and kind not in window.alerted:
            window.alerted.append(kind)
            outputs.append(self._alert(partition, window, kind, total, threshold))
        self._windows[key] = window.encode()
        return outputs

    def _alert(
        self, partition: int, window: WindowCounts, kind: str, total: int, threshold: int
    ) -> Output:
        start = datetime.fromtimestamp(window.start, UTC).isoformat()
        logger.warning(
            "ALERT: %d %s events in the %ds window from %s on log partition %d (threshold %d)",
            total,
            kind,
            self._size,
            start,
            partition,
            threshold,
        )
        self.counters["alerts"] += 1
        doc = {
            "kind": kind,
            "count": total,
            "threshold": threshold,
            "window_start": start,
            "window_seconds": self._size,
            "partition": partition,
            "reasons": window.counts.get(kind, {}),
        }
        value = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        return Output("alerts", kind.encode(), value)

    def _close_windows(self, partition: int, now: float) -> list[Output]:
        prefix = f"{partition}|".encode()
        outputs: list[Output] = []
        for key, stored in list(self._windows.items()):
            if not key.startswith(prefix):
                continue
            window = WindowCounts.decode(stored)
            if window.start + self._size + self._grace > now:
                continue
            del self._windows[key]
            value = window.stats_value(partition=partition, size=self._size)
            outputs.append(Output("stats", f"{window.start}:{partition}".encode(), value))
        return outputs
