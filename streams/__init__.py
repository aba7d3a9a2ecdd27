"""The Revocast stream processor: a compacted snapshot of the revocation log, plus statistics.

Run it with ``revocast streams`` or ``faust -A streams.app worker -l info``. Settings come from
the environment (:class:`StreamsSettings`); ``REVOCAST_EVENT_KEYS`` holds the same verification
keys the SDKs use. The worker never signs anything: it republishes the original signed records.

Topics (``<log>`` is ``REVOCAST_TOPIC``, default ``revocast.revocations``)
-------------------------------------------------------------------------

``<log>``
    Input. Signed revocation events, owned by the producer side. Must exist.
``<log>.state``
    Compacted snapshot; created at startup with as many partitions as ``<log>``,
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

Rule records — key ``<rule key>`` (UTF-8), one of ``jti:<jti>``, ``sid:<sid>``,
``sub-wm:<sub>``, ``sub-block:<sub>``, ``sub-del:<sub>``, ``sub-ver:<sub>``, ``kid:<kid>``,
``global``. The value and the ``revocast-sig`` header are the **original log record's value
and signature, byte for byte**: decode and verify them with the same ``EventCodec`` as log
records and apply the event exactly as if it came from the log. A ``sub-block:<sub>`` record
may hold a ``subject.unblocked`` event (the unblock that superseded a block). Per key and
partition the last record wins; the same key can appear in several partitions (a ``jti``
revoked once with and once without a ``sub``): apply each, as the log would. A record with
value ``None`` (tombstone) is written only once the rule's ``expires_at`` (plus the worker's
expiry margin, for SDK leeway) has passed, so it removes nothing an SDK that honours
``expires_at`` still uses: SDKs may ignore tombstones. (This and the marker's promise assume
one writer per state partition: see "One writer per state partition" below.)

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

  A record re-written after a restart may come after a newer winner of the same key that
  the crash did not lose (the table lost it): readers merge every record they see, and the
  newer event's offset is past the marker, so until it is processed again an SDK replays it
  from the log, and re-processing it writes it again before any marker covers it.
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
  so the worker keeps heartbeating; about as long as an SDK's state-topic bootstrap of that
  partition). Otherwise later events would be judged against an empty table, and a weaker
  event (an older watermark delivered late) would replace a winner the state topic holds.
  When the state topic cannot be read (after retries; a read fails after 60 s without a
  record, however long a large state takes), the partition is held (nothing of it is
  processed, no marker written; logged as an error) until it is assigned again: SDKs then
  read the log after the last marker, as they do anyway. The records read are held in
  memory until merged (~30-40 µs each here): a seed must finish within faust's
  ``broker_max_poll_interval`` (1000 s; ``max_poll_interval_ms`` in the Kafka options).
  A rebalance in the middle of a seed holds the partition too (faust hands the agent's
  current event over after the revocation) until the next assignment resumes it and seeds
  it again.
* **One writer per state partition: not enforced (no fencing).** faust gives a worker no
  way to tell it lost its partitions before its consumer hears so from the group
  coordinator. A worker paused past its session timeout (GC, SIGSTOP, a VM stall, a
  partition from the coordinator) whose partitions were reassigned still, once it runs
  again, sends the records it had queued and processes the log records and ticks it had
  fetched, until its next heartbeat or commit fails (milliseconds to a few seconds). Its
  late rule record or tombstone for a key then follows the new owner's record of that key,
  and compaction keeps only the last: a weaker winner (an older watermark, an unblock the
  new owner saw a later block supersede) or a tombstone (an unblock it saw expire, while
  the new owner holds a later block) replaces the new owner's winner, whose log record
  lies behind the new owner's markers, so SDKs bootstrapping from the compacted state
  topic skip it. Nothing rewrites it until another event of that rule arrives. Before
  compaction every record is still there and SDKs, which merge every rule record they read,
  are unaffected.
  ``tests/streams/test_worker_kafka.py::test_a_paused_worker_resumed_after_a_takeover_does_not_shadow_the_new_owners_rules``
  shows it (an expected failure). A late *marker* covers only offsets whose effects its
  writer wrote and saw acknowledged: one behind the new owner's makes SDKs replay more of
  the log; one ahead of it vouches for those effects while the new owner, not there yet,
  may write weaker records of the same rules after them, the same shadowing, until it
  reaches those offsets and writes the winners again. Snapshots are not affected this way
  (``docs/snapshots.md``). The fix planned: key a rule record by its event
  (``<rule key>`` plus the event id), tombstone a record only when its own event is
  superseded (after the new winner's record is written) or expired, and never tombstone an
  unblock (a late record of the block it lifted would otherwise come back); a late record
  is then one more genuine event, which SDKs merge as they would from the log, and a late
  tombstone removes only an event that expired or that its writer saw superseded. Until
  then: run one worker, or give the workers a session timeout longer than the pauses they
  can suffer; a worker that was paused past it logs ``Heartbeat failed: local member_id was
  not recognized`` (or an ``UnknownMemberIdError`` commit failure) on resuming: stop the
  workers and run ``revocast rebuild-state``, which merges the log back in (the rules
  whose events the log still holds).
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
