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
``expires_at`` still uses: SDKs may ignore tombstones.

Offset markers — key ``__offsets__:<p>``, no signature, value JSON
``{"topic": "<log>", "partition": p, "offset": o}``, always written to state partition *p*.
It promises: every effect of log partition *p* up to and including offset *o* is in state
partition *p* before this marker. Markers are refreshed about every ``tick_seconds`` while
the log moves, and on the first tick after a start or rebalance up to the group's committed
offset (everything below it was processed and flushed before the commit), so a partition
that is idle after a crash is still marked to its end.

Bootstrap:

1. Snapshot the state topic's end offsets (``end_offsets``, with a timeout). Read every
   partition from the beginning to that snapshot, verifying and applying rule records,
   keeping the last marker per log partition. Skip keys starting
   with ``__`` other than markers (reserved).
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
  lifts an older block (it is then tombstoned at once). Duplicates (same event id as the
  current winner) change nothing; they re-write the winner's record, so a redelivered
  event repairs a state write lost in a crash. Re-writing the same winner under the same
  key is harmless: compaction keeps one.
* Crash repair: faust flushes the producer before it commits offsets, so the table
  changelog and the state records of every event below the committed offset are durable;
  events from the committed offset on are redelivered and re-written. On top of that, the
  first tick of each partition after start or rebalance re-publishes every live rule of the
  recovered table, and so does the next tick after a state write fails (a send error is
  otherwise silent: faust's flush does not raise it). The state topic therefore holds at
  least what the table holds. What neither can repair is a *changelog* write lost below the
  committed offset (a failed changelog send, again silent): that rule is gone from the table
  and the log is not re-read; only a rebuild from the log (a fresh app id) restores it.
  Re-publishing may write an older winner after a newer one the state topic already holds
  (when the changelog lost a write the state topic kept). Readers still see both (SDKs
  merge every record, so the newer one wins), and the newer event's offset is at or after
  the committed offset, so its redelivery writes it again right after the restart; until
  then compaction cannot drop it, as it sits in the active segment.
* Expiry arrives as a stream event: a timer sends a tick per assigned partition to
  ``<app id>-ticks``; the agent reads log and ticks together and, on tick *p*, tombstones
  expired rules of partition *p*, closes finished windows and writes the marker.
* Records that fail verification are skipped, counted by reason and logged; unsigned records
  are accepted only with ``REVOCAST_STREAMS_ALLOW_UNSIGNED=true``.
* Stats: a window counts each log record once, also when it is redelivered while the window
  is open (see ``streams._windows``); a record redelivered after its window was published
  is counted again, so stats are at least once. Distinct records carrying the same event
  count each, unless the event is its rule's current winner (then it is a duplicate).
"""

from streams._records import OFFSETS_KEY_PREFIX, parse_marker
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
    "parse_marker",
    "rank",
    "rule_key",
]
