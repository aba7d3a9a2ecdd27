"""The Revocast stream processor: a compacted snapshot of the revocation log, plus statistics.

Run it with ``revocast streams`` or ``faust -A streams.app worker -l info``. Settings come from
the environment (:class:`StreamsSettings`); ``REVOCAST_EVENT_KEYS`` holds the same verification
keys the SDKs use. The worker never signs anything: it republishes the original signed records.

Topics (``<log>`` is ``REVOCAST_TOPIC``, default ``revocast.revocations``)
-------------------------------------------------------------------------

``<log>``
    Input. Signed revocation events, owned by the producer side. Must exist.
``<log>.state``
    Compacted state: one record per winning event (keyed ``<rule key>#<event id>``, see
    below) and offset markers; created at startup with as many partitions as ``<log>``,
    ``cleanup.policy=compact``.
``<log>.stats``
    JSON, one record per (window, log partition) when the window closes (see ``_windows``).
``<log>.alerts``
    JSON alert records (key: the event kind) when blocks or global revocations in one window
    and log partition exceed the thresholds; also logged at WARNING.
``<app id>-ticks``, ``<app id>-rules-changelog``, ``<app id>-windows-changelog``
    Internal.

State topic protocol (what the SDK implements)
-----------------------------------------------

State partition *p* summarises log partition *p* only. It holds two kinds of record:

Rule records — key ``<rule key>#<event id>`` (UTF-8: one key per event), where ``<rule key>``
is one of ``jti:<jti>``, ``sid:<sid>``, ``sub-wm:<sub>``, ``sub-block:<sub>``,
``sub-del:<sub>``, ``sub-ver:<sub>``, ``kid:<kid>``, ``global``; records keyed by the rule key
alone were written by workers before per-event keys, and are by ``revocast rebuild-state``.
The value and the ``revocast-sig`` header are the **original log record's value and
signature, byte for byte**: decode and verify them with the same ``EventCodec`` as log
records and apply the event exactly as if it came from the log. Several records of one rule
can be live at once (the winner, and an event it beats whose tombstone was lost in a crash or
that a paused worker wrote late), and the same rule can appear in several partitions (a
``jti`` revoked once with and once without a ``sub``): apply each, as the log would. A record
with value ``None`` (tombstone) removes the record of one event, and is written only once
another event of the rule beats it (after that event's record) or once its ``expires_at``
(plus the worker's expiry margin, for SDK leeway) has passed (then the rule's key alone is
tombstoned too). An unblock's record is never tombstoned: it keeps lifting every older block
of its subject. So a tombstone removes nothing an SDK that honours ``expires_at`` still uses:
SDKs may ignore tombstones.

Offset markers — key ``__offsets__:<p>``, no signature, value JSON
``{"topic": "<log>", "topic_id": "<uuid>", "partition": p, "offset": o}``, always written to
state partition *p* (``topic_id``: the log's Kafka topic id, KIP-516, left out for a broker
that gives none). It promises: every effect of log partition *p* up to and including offset
*o* of that incarnation of the log is in state partition *p* before this marker. Markers are
refreshed about every ``tick_seconds`` while the log moves (see "Markers and restarts" below
for how the worker keeps the promise).

Bootstrap:

1. Snapshot the state topic's end offsets (``end_offsets``, with a timeout). Read every
   partition from the beginning to that snapshot, verifying and applying rule records,
   keeping the last marker per log partition. Skip keys starting
   with ``__`` other than markers (reserved). A partition whose last marker names another
   ``topic_id`` than the log's current one (or none while the log has one) belongs to a
   deleted incarnation of the log: apply none of its records, and treat it as unmarked.
2. For every log partition *p*: start at ``marker.offset + 1``, or at the beginning of the log
   partition if no marker was seen. If the marker is beyond the log's end offset, ignore it
   and start at the beginning (a marker is not signed; only the streams worker may write to
   the state topic — enforce that with ACLs).
3. Tail the log from there. Records before the marker are replayed harmlessly: applying an
   event is idempotent, so overlap is fine; the marker rule guarantees there is no gap.

The SDK must still honour ``expires_at`` itself: tombstones are written shortly after expiry
(every tick), but one lost in a crash is not rewritten.

Guarantees and limits
---------------------

* Rules: a rule keeps one winner, chosen by a total order (``streams._rules.rank``), so the
  result does not depend on arrival order. The SDK's merge uses the same order and keeps
  what the winner says, so applying the state topic gives the same
  ``RevocationState.snapshot()`` as replaying the log (``streams._rules`` gives the per-kind
  reasoning, why no valid token loses a revocation, and the preconditions: one
  ``expires_at`` per jti, and ``expires_at`` at least start + the SDK's
  ``max_token_lifetime``, as the producer writes them when its lifetime is not shorter).
  A ``sub-block`` is ordered by time alone: an unblock read after its ``expires_at`` still
  lifts an older block (it is written, so that readers skipping tombstones see it, and
  tombstoned on the next tick). Duplicates (same event id as the
  current winner) change nothing; they re-write the winner's record and table entry, so a
  redelivered event repairs a state or changelog write lost in a crash. Re-writing the
  same winner under the same key is harmless: compaction keeps one.
* Markers and restarts. The promise does not rest on faust's committed offset, which can
  be ahead of writes a crash loses (issue #5: kill -9 left a committed offset past a record
  whose changelog and state writes were both gone; the restarted worker never re-read it and
  its next marker covered the hole). What faust-streaming 0.15 does: the commit awaits
  ``producer.flush()``, but ``ProducerBuffer.flush()`` returns as soon as no buffered
  message goes out within 0.1 s (``flush_atmost``), so table changelog writes (queued with
  ``send_soon``) can still be in faust's buffer when the offset is committed; and offsets
  count as acknowledged without the agent having processed them: events the stream skips
  while flow control is suspended or from a stale generation are acked, and jumps in the
  delivered offsets are recorded as "gaps" that ``_new_offset`` treats as acked (the gap
  interval even includes the record being delivered). A state record the agent did send is
  in aiokafka's accumulator before the event is acked, and that flush waits for it; but a
  record acked without being processed has neither write. So instead:

  - *Acknowledged before marked.* The worker hands the processor every send's future: the
    state records and the rules table's changelog writes. A tick queues the covered offset
    behind the sends made so far; the marker is written (on a later tick) only once every
    one of them is acknowledged (``acks=all``). A failed send drops the markers queued
    behind it; the next tick re-publishes every live rule of the partition from the
    in-memory table and re-writes it to the table (so its changelog has it), and markers
    resume behind that repair. A publish that raised does the same.
  - *Covered in a row.* A marker only covers offsets the agent processed one after the
    other from where the partition was resumed; a record arriving past the next expected
    offset stops the partition's markers (logged as an error) until it is assigned again.
  - *Resume from the marker.* On every assignment (start, restart, rebalance), once faust
    has recovered the tables and before it resumes the streams, the worker reads the last
    marker of each assigned partition from the tail of the state topic and re-reads the log
    from ``marker + 1`` (from the log's first offset without a usable marker; from the
    group's committed offset when that is lower): it commits that offset for the group and
    seeks there, so faust's own seek to the committed offset lands on it. Everything up to
    the marker is in the state topic and in the table's changelog, so the recovered table
    holds at least those effects; everything after is processed again, which is harmless
    (the merge does not depend on order; duplicates re-assert the winner, so a state
    record lost in the crash is written again). A table not in step with that marker is
    seeded from the state topic first (below). Before giving partitions up in a rebalance,
    the worker waits (briefly) for its writes in flight to land.

  A record re-written after a restart may be of an event that a newer winner the crash did
  not lose (the table lost it) beats: both stay, under their own keys, and readers merge
  every record they see.
  Limits: the log's offsets must be contiguous (the Revocast producer is idempotent, not
  transactional; transaction markers would stop the markers, never open a gap), and a
  tombstone lost in a crash is not rewritten (SDKs honour ``expires_at``). A state topic
  written by a worker older than this protocol may hold markers ahead of lost writes:
  ``revocast rebuild-state`` rewrites it from the log.
* **The rules table is seeded from the state topic when it is not in step with it.** The
  table remembers the last marker it holds every effect of (written with each marker, so it
  lives and dies with ``<app id>-rules-changelog``). On assignment, a partition whose table
  names another marker than the state topic's last one (a new app id, a deleted or lagging
  changelog, a rebuilt state topic) has its state partition read back and every rule record
  verified and merged into the table before anything else of it is processed (in slices,
  each merged rule a changelog write). Otherwise later events would be judged against an
  empty table, and a weaker event (an older watermark delivered late) would replace a winner
  the state topic holds.
  When the state topic cannot be read (after retries; a read fails after 60 s without a
  record, however long a large state takes), the partition is held (nothing of it is
  processed, no marker written; logged as an error) until it is assigned again: SDKs then
  read the log after the last marker, as they do anyway. The records read are held in
  memory until merged (reading takes ~25-35 µs each here; merging is paced by the
  changelog writes, 5-18 k rules/s here). faust fetches nothing while the state is read,
  nor once its buffers fill during the merge, and aiokafka leaves the group of a consumer
  that has not fetched for ``max_poll_interval_ms``: a seed longer than that started over
  at every assignment and never finished. While it seeds, the worker counts as fetching
  (:mod:`streams._keepalive`), so a seed takes as long as it takes; the table is recorded
  in step with the state topic only by the first marker written after the whole seed.
  A rebalance in the middle of a seed holds the partition too (faust hands the agent's
  current event over after the revocation) until the next assignment resumes it and seeds
  it again.
* **A paused worker's late writes.** faust has no fencing: a worker paused past its session
  timeout (GC, SIGSTOP, a VM stall, a partition from the coordinator) whose partitions were
  reassigned still, once it runs again, sends the records it had queued and processes the
  log records and ticks it had fetched, until its next heartbeat or commit fails
  (milliseconds to a few seconds), so its records land after the new owner's. Keyed by rule,
  a late weaker record or tombstone replaced the new owner's winner under compaction, behind
  the new owner's marker (hundreds of rules per run in
  ``tests/streams/test_worker_kafka.py::test_a_paused_worker_resumed_after_a_takeover_does_not_shadow_the_new_owners_rules``).
  Keyed by event, every record is a genuine event that compaction removes only by a later
  record of the same event: a late record is one more event SDKs merge, as from the log, and
  a late tombstone removes an event its writer saw beaten by a record it wrote first (that
  record, or the log after the marker, holds the stronger event) or saw expire. A late
  block record cannot come back into force: the unblock that lifted it keeps its record. A
  late marker covers only offsets whose effects its writer wrote and saw acknowledged, and
  each of those records stays until beaten or expired, so it promises no more than a marker
  of the new owner; one behind the new owner's makes SDKs replay more of the log. What it
  costs: a late record of a beaten event stays until its own expiry (an unblock's, and a
  beaten block's or revoked key's, for good), and each unblocked subject keeps one record.
* Expiry arrives as a stream event: a timer sends a tick per assigned partition to
  ``<app id>-ticks``; the agent reads log and ticks together and, on tick *p*, tombstones
  expired rules of partition *p*, closes finished windows and writes the marker.
* Records that fail verification are skipped, counted by reason and logged; unsigned records
  are accepted only with ``REVOCAST_STREAMS_ALLOW_UNSIGNED=true``. A record signed by a key
  the worker does not know (a rotation half rolled out: services may already trust it) also
  holds its partition's markers before it until the worker restarts with the key, so SDKs
  bootstrapping from the state topic replay it from the log rather than skip it.
* Stats: a window counts each log record once, also when it is redelivered while the window
  is open (see ``streams._windows``); a record redelivered after its window was published
  is counted again, so stats are at least once. Distinct records carrying the same event
  count each, unless the event is its rule's current winner (then it is a duplicate).
"""

from streams._records import OFFSETS_KEY_PREFIX
from streams._rules import Merge, Outcome, Rule, merge, rank, rule_key
from streams._settings import StreamsSettings
from streams._topics import StreamsError

__all__ = [
    "OFFSETS_KEY_PREFIX",
    "Merge",
    "Outcome",
    "Rule",
    "StreamsError",
    "StreamsSettings",
    "merge",
    "rank",
    "rule_key",
]
