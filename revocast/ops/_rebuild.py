"""``revocast rebuild-state``: re-derive the compacted state topic from the log.

What it writes follows the state topic protocol of :mod:`streams` exactly, with the worker's
own rule logic (:func:`streams.merge`): per log partition, the winning original record of
every live rule, then tombstones for keys of the old state that are no longer live, then one
offset marker covering everything read. All records of a partition go through one producer
with ``acks=all`` and one request in flight, so a marker never lands before the rules it
covers.

Inputs. By default the winners are chosen from the log *and* the existing state topic: its
rule records are original signed events (verified here like log records), and they are the
only copy of rules whose log events retention has already deleted (blocks and revoked keys
never expire). Because the rule order is total, the union picks the same winners as the
worker would have; a wrong winner written by a bug loses to the right one, a rule the worker
failed to write comes back. ``log_only`` ignores the old state (when it is lost, or not
trusted at all): rules whose events have left the log are then gone, and their keys get
tombstones.

Running SDKs stay correct while this runs:

* an SDK that has bootstrapped never reads the state topic again: it tails the log;
* an SDK bootstrapping meanwhile reads up to a snapshot of the end offsets and starts each
  log partition after the last marker it saw. Either that is the old marker, whose promise
  still holds (nothing it covered has been removed: in the default mode tombstones only hit
  expired rules), or the new one, which comes after every rule record it covers. Rule records
  are authentic events and applying one twice is idempotent, so reading some of the new ones
  on top of the old state changes nothing that the log would not;
* with ``log_only``, an SDK bootstrapping at that moment may still pick up an old rule the
  rebuild drops: it is a genuine signed revocation either way, and it expires as usual.

A running streams worker is another writer: it would keep its own (possibly wrong) table and
could tombstone a rule between our read and our write, or re-assert a winner we replaced.
So the rebuild refuses while a faust consumer group is active on the log topic, and also when
it cannot tell: Kafka leaves a group this principal may not Describe out of the listing, so
the worker's own group (its app id) is described by name, and any group that cannot be
described stops the rebuild. ``force=True`` skips the check (only when you know no worker
runs, or that its table is right, e.g. only the state topic was lost). After a bug in the
worker's rules, its table needs resetting (delete ``<app id>-rules-changelog`` and its data
directory, then rebuild): the worker seeds an empty table from the state topic on
assignment (see :mod:`streams`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.errors import GroupIdNotFoundError, KafkaError, TopicAlreadyExistsError

from consumer_sdk._marker import read_marker
from consumer_sdk._settings import MAX_LEEWAY
from revocast.ops._reader import LogRange, OpsKafkaError, read_range
from revocast.ops._settings import OpsSettings
from revocast.ops._status import kafka_admin, topic_partitions
from revocation_events import (
    SIGNATURE_HEADER,
    EventCodec,
    MalformedEventError,
    closing_on_failure,
)
from streams import Rule, StreamsError, merge
from streams._records import (
    Output,
    marker_record,
    rule_record,
    signature_of,
    tombstone,
)
from streams._seed import log_incarnation
from streams._topics import cluster_replication, state_topic_config

__all__ = [
    "RebuildReport",
    "StreamsWorkerRunningError",
    "StreamsWorkerUnknownError",
    "UnverifiableRecordsError",
    "rebuild_state",
    "running_workers",
]

_INACTIVE_GROUP_STATES = frozenset({"Empty", "Dead"})
_GROUP_NOT_FOUND = f"[Error {GroupIdNotFoundError.errno}] "
"""How kafka-python words a group's error code 69 (newer brokers' answer for a group that
does not exist)."""


class UnverifiableRecordsError(OpsKafkaError):
    """Records signed by keys this command does not know: rebuilding would hide them from SDKs
    that bootstrap from the state topic, while services trusting those keys apply them."""


class StreamsWorkerRunningError(OpsKafkaError):
    """A streams worker is consuming the log; the rebuild would race with it."""


class ForeignStateTopicError(OpsKafkaError):
    """``<log>.state`` holds markers of another incarnation of the log (the log was deleted
    and recreated, its state topic left): its rules are the old log's, and re-marking them
    for the new one would make SDKs trust them. Delete the state topic and run again."""


class StreamsWorkerUnknownError(OpsKafkaError):
    """Whether a streams worker consumes the log cannot be told (no Describe on a consumer
    group, groups that cannot be listed): the rebuild refuses rather than risk racing one."""


@dataclass
class RebuildReport:
    state_topic: str
    created_topic: bool = False
    log_records: int = 0
    state_records: int = 0
    rules_written: int = 0
    tombstones: int = 0
    markers: dict[int, int] = field(default_factory=dict)
    expired: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"state topic {self.state_topic}"
            + (" (created)" if self.created_topic else "")
            + f": {self.rules_written} rules, {self.tombstones} tombstones, "
            f"{len(self.markers)} markers written in {self.seconds:.1f} s",
            f"read: {self.log_records} log records, {self.state_records} old state records",
            f"rules already expired (not written): {self.expired}",
            "markers: "
            + (", ".join(f"{p}@{off}" for p, off in sorted(self.markers.items())) or "(none)"),
            "skipped records by reason:",
        ]
        skipped = sorted(self.skipped.items())
        lines += [f"  {reason:<28} {count}" for reason, count in skipped] or ["  (none)"]
        return "\n".join(lines)


class _DropWarnings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.WARNING


_T = TypeVar("_T")


def _retrying(
    call: Callable[[], _T],
    retry_for: float,
    sleep: Callable[[float], None],
    clock: Callable[[], float],
) -> _T:
    """``call()``, again after a retriable Kafka error (a group coordinator not available yet
    or loading, as on a new cluster or while one moves) until ``retry_for`` seconds are spent."""
    deadline = clock() + retry_for
    backoff = 0.1
    while True:
        try:
            return call()
        except KafkaError as exc:
            left = deadline - clock()
            if not exc.retriable or left <= 0:
                raise
            sleep(min(backoff, left))
            backoff = min(backoff * 2, 1.0)


def running_workers(
    admin: Any,
    log_topic: str,
    *,
    groups: Iterable[str] = (),
    retry_for: float = 10.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Active faust consumer groups with a member assigned to ``log_topic``, among the listed
    groups and ``groups`` (described by name: the listing leaves out groups this principal
    may not Describe).

    Raises :class:`StreamsWorkerUnknownError` when groups cannot be listed, or a group cannot
    be described and no running worker was found otherwise (retriable Kafka errors are tried
    again for ``retry_for`` seconds first).
    """
    try:
        listed = {g["group_id"] for g in _retrying(admin.list_groups, retry_for, sleep, clock)}
    except KafkaError as exc:
        raise StreamsWorkerUnknownError(
            f"cannot list consumer groups: {type(exc).__name__}: {exc}"
        ) from exc
    ids = sorted(listed.union(groups))
    if not ids:
        return []
    groups_log = logging.getLogger("kafka.admin._groups")
    quiet = _DropWarnings()
    # kafka-python cannot decode faust's member metadata and warns about every member.
    groups_log.addFilter(quiet)
    try:
        described = _retrying(lambda: admin.describe_groups(ids), retry_for, sleep, clock)
    except KafkaError as exc:  # e.g. no Describe on a group: finding its coordinator fails
        raise StreamsWorkerUnknownError(
            f"cannot describe consumer groups {', '.join(ids)}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        groups_log.removeFilter(quiet)
    running: list[str] = []
    unknown: list[str] = []
    for group_id in ids:
        info = described.get(group_id)
        error = None if info is None else info.get("error")
        if info is None or (error and not str(error).startswith(_GROUP_NOT_FOUND)):
            unknown.append(f"{group_id} ({error or 'not described'})")
            continue
        if (
            error
            or info.get("protocol_data") != "faust"
            or info.get("group_state") in _INACTIVE_GROUP_STATES
        ):
            continue
        for member in info.get("members") or ():
            assigned = (member.get("member_assignment") or {}).get("assigned_partitions") or ()
            if any(a.get("topic") == log_topic for a in assigned):
                running.append(group_id)
                break
    if unknown and not running:
        raise StreamsWorkerUnknownError(f"cannot describe consumer group(s) {'; '.join(unknown)}")
    return running


class _Rules:
    """The worker's rules table without faust: ``(partition, rule key) -> winner``."""

    def __init__(self, codec: EventCodec, now: float, skipped: Counter[str]) -> None:
        self._codec = codec
        self._now = now
        self._skipped = skipped
        self.winners: dict[tuple[int, str], Rule] = {}

    def add(self, partition: int, value: bytes | None, headers: Any, *, origin: str) -> None:
        signature = signature_of(headers)
        try:
            event = self._codec.decode(
                value, () if signature is None else ((SIGNATURE_HEADER, signature),)
            )
        except MalformedEventError as exc:
            self._skipped[f"{origin}:{exc.reason}"] += 1
            return
        assert value is not None  # decode() refuses tombstones
        rule = Rule(event, value, signature)
        slot = (partition, rule.key)
        result = merge(self.winners.get(slot), rule, self._now)
        if result.winner is None:
            self.winners.pop(slot, None)
        else:
            self.winners[slot] = result.winner

    def live(self) -> tuple[dict[tuple[int, str], Rule], int]:
        live = {slot: r for slot, r in self.winners.items() if not r.expired(self._now)}
        return live, len(self.winners) - len(live)


def _prepare_state_topic(
    settings: OpsSettings, state_topic: str, *, force: bool
) -> tuple[int, bool]:
    """Check the log and workers, create the state topic if needed; return the log's
    partition count and whether the state topic was created."""
    kafka = settings.kafka
    with kafka_admin(kafka) as admin:
        partitions = topic_partitions(admin, kafka.topic)
        if partitions is None:
            raise OpsKafkaError(f"topic {kafka.topic!r} does not exist")
        if not force:
            app_id = settings.worker_settings().app_id
            try:
                workers = running_workers(admin, kafka.topic, groups=(app_id,))
            except StreamsWorkerUnknownError as exc:
                raise StreamsWorkerUnknownError(
                    f"cannot tell whether a streams worker consumes {kafka.topic!r}: {exc}. "
                    f"Give this principal Describe on the worker's group {app_id!r} "
                    "(REVOCAST_STREAMS_APP_ID) and on the groups named, or use --force once you "
                    "know no worker runs"
                ) from exc
            if workers:
                raise StreamsWorkerRunningError(
                    f"streams worker group(s) {', '.join(workers)} consume {kafka.topic!r}: "
                    "stop them first (or --force if their tables are known to be right)"
                )
        existing = topic_partitions(admin, state_topic)
        if existing is not None:
            if existing != partitions:
                raise OpsKafkaError(
                    f"state topic {state_topic!r} has {existing} partitions but the log has "
                    f"{partitions}; delete it and run again"
                )
            return partitions, False
        # Exactly as the worker creates it (streams/_topics.py), from its own settings and
        # with the same replication factor (auto: counted on this cluster).
        worker = cluster_replication(admin, settings.worker_settings())
        spec = {
            "num_partitions": partitions,
            "replication_factor": worker.replication_factor,
            "configs": state_topic_config(worker),
        }
        try:
            admin.create_topics({state_topic: spec}, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            return partitions, False
        except KafkaError as exc:
            raise OpsKafkaError(
                f"cannot create state topic {state_topic!r} with replication factor "
                f"{worker.replication_factor} (REVOCAST_STREAMS_REPLICATION_FACTOR, by "
                "default min(3, brokers)): "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return partitions, True


def _outputs(
    live: Mapping[tuple[int, str], Rule],
    old_keys: set[tuple[int, str]],
    log_topic: str,
    log_ends: Mapping[int, int],
    topic_id: uuid.UUID | None,
) -> list[Output]:
    """Per partition: the winners, tombstones for old keys without one, then the marker."""
    by_partition: dict[int, list[Output]] = {p: [] for p in log_ends}
    for (p, _), rule in sorted(live.items()):
        by_partition[p].append(rule_record(rule, p))
    for p, key in sorted(old_keys - live.keys()):
        by_partition.setdefault(p, []).append(tombstone(key, p))
    outputs: list[Output] = []
    for p, records in sorted(by_partition.items()):
        outputs += records
        if log_ends.get(p, 0) > 0:
            outputs.append(marker_record(log_topic, p, log_ends[p] - 1, topic_id=topic_id))
    return outputs


def _produce(settings: OpsSettings, topic: str, outputs: list[Output]) -> None:
    config = {
        **settings.kafka.client_config(KafkaProducer.DEFAULT_CONFIG),
        "acks": "all",
        "max_in_flight_requests_per_connection": 1,
        "linger_ms": 20,
        "allow_auto_create_topics": False,
    }
    try:
        producer = closing_on_failure(KafkaProducer, config)
    except KafkaError as exc:
        raise OpsKafkaError(f"cannot reach Kafka: {exc}") from exc
    try:
        futures = [
            producer.send(
                topic,
                key=out.key,
                value=out.value,
                partition=out.partition,
                headers=list(out.headers) or None,
            )
            for out in outputs
        ]
        producer.flush(timeout=settings.kafka.request_timeout_ms / 1000)
        for future in futures:
            future.get(timeout=settings.kafka.request_timeout_ms / 1000)
    except KafkaError as exc:
        raise OpsKafkaError(f"writing {topic!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        producer.close(timeout=10)


def rebuild_state(
    settings: OpsSettings,
    *,
    since: datetime | None = None,
    log_only: bool = False,
    force: bool = False,
    clock: Callable[[], float] = time.time,
    on_range: Callable[[LogRange], None] = lambda _: None,
    on_record: Callable[[], None] = lambda: None,
) -> RebuildReport:
    """Rewrite the state topic (the worker's: ``REVOCAST_STATE_TOPIC``, default
    ``<log>.state``) from the log (from the beginning, or from ``since``) and, unless
    ``log_only``, the existing state. See the module documentation for why this is safe."""
    started = time.monotonic()
    log_topic = settings.kafka.topic
    state_topic = settings.worker_settings().state_topic
    _, created = _prepare_state_topic(settings, state_topic, force=force)
    report = RebuildReport(state_topic=state_topic, created_topic=created)
    try:  # the incarnation the new markers are of, as the worker stamps it (SDKs check it)
        log_id, _ = log_incarnation(settings.worker_settings(), ())
    except StreamsError as exc:
        raise OpsKafkaError(str(exc)) from exc
    foreign: set[int] = set()
    # As the worker (its default expiry margin): a rule stays until no SDK's leeway can still
    # accept the token it covers, since SDKs skip the log records behind the new markers.
    rules = _Rules(settings.codec(), clock() - MAX_LEEWAY, report.skipped)
    old_keys: set[tuple[int, str]] = set()
    for record in read_range(settings.kafka, state_topic, since_ms=None):
        try:
            key = record.key.decode() if record.key else ""
        except UnicodeDecodeError:  # no rule key (a foreign writer): kept as it is
            report.skipped["state_key_not_utf8"] += 1
            continue
        if key.startswith("__") or not key:  # markers and reserved keys
            marker = read_marker(record.key, record.value, log_topic, record.partition)
            if marker is not None:  # the partition's latest marker counts
                named = marker.topic_id
                other = log_id is not None and named is not None and named != log_id
                (foreign.add if other else foreign.discard)(record.partition)
            continue
        report.state_records += 1
        slot = (record.partition, key)
        if record.value is None:
            old_keys.discard(slot)
            continue
        old_keys.add(slot)
        if not log_only:
            rules.add(record.partition, record.value, record.headers, origin="state")
    if foreign:
        raise ForeignStateTopicError(
            f"{state_topic!r} holds markers of a deleted incarnation of {log_topic!r} "
            f"(partitions {sorted(foreign)}): its rules are the old log's; delete it and run "
            "again (nothing was written)"
        )
    log_range: LogRange | None = None

    def seen_range(found: LogRange) -> None:
        nonlocal log_range
        log_range = found
        on_range(found)

    since_ms = None if since is None else int(since.timestamp() * 1000)
    for record in read_range(settings.kafka, log_topic, since_ms=since_ms, on_range=seen_range):
        report.log_records += 1
        on_record()
        rules.add(record.partition, record.value, record.headers, origin="log")
    assert log_range is not None  # read_range reports the range before the first record
    unknown = report.skipped.get("log:unknown_key", 0) + report.skipped.get("state:unknown_key", 0)
    if unknown:
        # A key rotation half rolled out: markers past such records (or tombstones for such
        # state rules) would make SDKs bootstrapping from the state topic skip revocations
        # that services trusting the key apply from the log.
        raise UnverifiableRecordsError(
            f"{unknown} record(s) are signed by keys not in REVOCAST_EVENT_KEYS; nothing was "
            "written: add the keys (every key services trust) and run again"
        )
    live, report.expired = rules.live()
    outputs = _outputs(live, old_keys, log_topic, log_range.ends, log_id)
    _produce(settings, state_topic, outputs)
    report.rules_written = len(live)
    report.tombstones = len(old_keys - live.keys())
    report.markers = {p: end - 1 for p, end in log_range.ends.items() if end > 0}
    report.seconds = time.monotonic() - started
    return report
