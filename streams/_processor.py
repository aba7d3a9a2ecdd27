"""The worker's logic without faust: records in, table updates and output records out.

The faust agent feeds every log record and every tick to one :class:`Processor` in partition
order and produces the returned :class:`Output` records in the order given, all for state
partition = log partition, so a marker never overtakes the rule records it covers.
"""

from __future__ import annotations

import heapq
import json
import logging
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime

from revocation_events import SIGNATURE_HEADER, EventCodec, MalformedEventError
from streams._records import (
    Output,
    decode_stored_rule,
    encode_stored_rule,
    marker_record,
    rule_record,
    stored_expiry,
    tombstone,
)
from streams._rules import Outcome, Rule, merge, rule_key
from streams._windows import WindowCounts, window_key, window_start

__all__ = ["Processor"]

logger = logging.getLogger("streams")

Headers = Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None


def _table_key(partition: int, key: str) -> bytes:
    return f"{partition}|{key}".encode()


def _split_table_key(table_key: bytes) -> tuple[int, str]:
    partition, _, key = table_key.decode().partition("|")
    return int(partition), key


def _signature(headers: Headers) -> bytes | None:
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == SIGNATURE_HEADER:
            return value
    return None


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

    ``committed(partition)`` returns the group's committed offset of a log partition (the
    next record to read), or ``None``. Everything below it was processed and its output
    flushed before the commit, so after a restart or a rebalance the first tick can mark
    up to ``committed - 1`` even when no record is redelivered: without it, a partition
    whose records were all committed before a crash, but not yet covered by a marker, kept
    its old marker until new records arrived (the state topic looked behind forever).
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
        committed: Callable[[int], int | None] | None = None,
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
        self._committed = committed
        self.counters: Counter[str] = Counter()
        self._expiry: dict[int, list[tuple[float, bytes]]] = {}
        self._last_offset: dict[int, int] = {}
        self._marked: dict[int, int] = {}
        self._synced: set[int] = set()

    def forget_partitions(self) -> None:
        """Drop in-memory indexes after a rebalance; they are rebuilt from the tables."""
        self._expiry.clear()
        self._last_offset.clear()
        self._marked.clear()
        self._synced.clear()

    def resync(self, partition: int) -> None:
        """Re-publish every live rule of ``partition`` on its next tick (a state write failed)."""
        self._synced.discard(partition)

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
        self._last_offset[partition] = offset
        signature = _signature(headers)
        try:
            event = self._codec.decode(
                value, () if signature is None else ((SIGNATURE_HEADER, signature),)
            )
        except MalformedEventError as exc:
            self.counters[f"skipped.{exc.reason}"] += 1
            logger.warning("skipped record %s@%d: %s: %s", partition, offset, exc.reason, exc)
            return []
        assert value is not None  # decode() refuses tombstones
        key = rule_key(event)
        table_key = _table_key(partition, key)
        stored = self._rules.get(table_key)
        existing = None if stored is None else decode_stored_rule(stored)
        now = self._now()
        result = merge(existing, Rule(event, value, signature), now)
        self.counters[result.outcome.value] += 1
        outputs: list[Output] = []
        if result.outcome is Outcome.REPLACED:
            assert result.winner is not None
            self._rules[table_key] = encode_stored_rule(result.winner)
            self._index(partition, table_key, result.winner.expires_at)
            outputs.append(self._winner_record(result.winner, key, partition, now))
        elif result.outcome is Outcome.DUPLICATE:
            # Re-assert the winner: after a crash the table changelog may hold it while the
            # state topic does not, and this replayed event is the only trace of it.
            assert result.winner is not None
            outputs.append(self._winner_record(result.winner, key, partition, now))
        if result.outcome is not Outcome.DUPLICATE:
            outputs.extend(self._count(partition, offset, timestamp, event.type, event.reason))
        return outputs

    def on_tick(self, partition: int) -> list[Output]:
        """Sweep expired rules, close finished windows and publish the offset marker.

        The first tick of a partition after start, a rebalance or :meth:`resync` also
        re-publishes every live rule in the table: a state write lost in a crash, whose event
        is not redelivered because its offset was committed, is repaired from the table.
        """
        now = self._now()
        outputs = self._sweep(partition, now)
        if partition not in self._synced:
            self._synced.add(partition)
            outputs.extend(self._republish(partition, now))
            self._marked.pop(partition, None)
            done = None if self._committed is None else self._committed(partition)
            if done is not None and done > 0:
                last = self._last_offset.get(partition, -1)
                self._last_offset[partition] = max(last, done - 1)
        outputs.extend(self._close_windows(partition, self._clock()))
        offset = self._last_offset.get(partition)
        if offset is not None and self._marked.get(partition) != offset:
            outputs.append(marker_record(self._log_topic, partition, offset))
            self._marked[partition] = offset
        return outputs

    def _now(self) -> float:
        """The clock minus the margin: rules expire ``expiry_margin`` after ``expires_at``."""
        return self._clock() - self._margin

    @staticmethod
    def _winner_record(winner: Rule, key: str, partition: int, now: float) -> Output:
        # Only an unblock can win while already expired (it still orders older blocks, so
        # the table keeps it until the sweep): for readers the rule is gone.
        if winner.expired(now):
            return tombstone(key, partition)
        return rule_record(winner, partition)

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
                expires_at = stored_expiry(stored) if table_key.startswith(prefix) else None
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
            del self._rules[table_key]
            self.counters["expired_rules"] += 1
            outputs.append(tombstone(_split_table_key(table_key)[1], partition))
        return outputs

    def _republish(self, partition: int, now: float) -> list[Output]:
        prefix = f"{partition}|".encode()
        outputs: list[Output] = []
        for table_key, stored in list(self._rules.items()):
            if table_key.startswith(prefix):
                expires_at = stored_expiry(stored)
                if expires_at is None or expires_at > now:
                    outputs.append(rule_record(decode_stored_rule(stored), partition))
        self.counters["republished"] += len(outputs)
        return outputs

    def _count(
        self, partition: int, offset: int, timestamp: float, kind: str, reason: str
    ) -> list[Output]:
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
