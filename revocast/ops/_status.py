"""``revocast status``: the log topic, how far the state topic lags it, and every live SDK.

Three sources, each read without a consumer group: the log topic's metadata, offsets and
configs; the last offset marker per state partition (see :mod:`streams`); and the heartbeats
SDK instances publish (see :mod:`consumer_sdk._heartbeat`) during the last ``window``.
Judging a report for monitoring is :mod:`revocast.ops._status_check`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import ConfigResource
from kafka.errors import KafkaError, TopicAlreadyExistsError

from consumer_sdk._marker import last_markers
from producer import min_retention
from producer._topic import broker_count, default_replication_factor
from revocast.ops._reader import OpsKafkaError, _consumer, read_range
from revocation_events import (
    KafkaSettings,
    KafkaUnreachableError,
    closing_on_failure,
    require_reachable,
)
from streams._settings import derived_topics

__all__ = [
    "HEARTBEAT_RETENTION",
    "Instance",
    "LogStatus",
    "StateStatus",
    "StatusReport",
    "collect_status",
    "ensure_heartbeat_topic",
    "human_duration",
    "kafka_admin",
]

HEARTBEAT_RETENTION = 3600.0
"""Seconds heartbeats are kept: enough for any ``--window``, small enough to stay tiny."""

_UNKNOWN_TOPIC = 3
_LOG_APPEND_TIME = 1
"""A record's ``timestamp_type`` when the broker stamped it."""


@contextmanager
def kafka_admin(kafka: KafkaSettings) -> Iterator[Any]:
    """A kafka-python admin client; Kafka errors become :class:`OpsKafkaError`."""
    where = ",".join(kafka.bootstrap_servers)
    config = kafka.client_config(KafkaAdminClient.DEFAULT_CONFIG)
    try:
        require_reachable(config)
        admin = closing_on_failure(KafkaAdminClient, config)
    except KafkaUnreachableError as exc:
        raise OpsKafkaError(f"cannot reach Kafka at {where}") from exc
    except KafkaError as exc:
        raise OpsKafkaError(f"cannot reach Kafka at {where}: {exc}") from exc
    try:
        yield admin
    except KafkaError as exc:
        raise OpsKafkaError(f"Kafka: {type(exc).__name__}: {exc}") from exc
    finally:
        admin.close()


def topic_partitions(admin: Any, topic: str) -> int | None:
    """Partition count, or ``None`` when the topic does not exist."""
    (meta,) = admin.describe_topics([topic])
    if meta["error_code"] == _UNKNOWN_TOPIC:
        return None
    if meta["error_code"] != 0:
        raise OpsKafkaError(f"cannot describe topic {topic!r} (Kafka error {meta['error_code']})")
    return len(meta["partitions"])


def ensure_heartbeat_topic(kafka: KafkaSettings, topic: str, *, partitions: int = 1) -> bool:
    """Create the heartbeat topic (delete policy, short retention) if missing; ``True`` if
    created."""
    with kafka_admin(kafka) as admin:
        if topic_partitions(admin, topic) is not None:
            return False
        brokers = broker_count(admin)
        configs = {
            "cleanup.policy": "delete",
            "retention.ms": str(int(HEARTBEAT_RETENTION * 1000)),
            # Record timestamps from the broker's clock, not each instance host's.
            "message.timestamp.type": "LogAppendTime",
        }
        spec = {
            "num_partitions": partitions,
            "replication_factor": default_replication_factor(brokers),
            "configs": configs,
        }
        try:
            admin.create_topics({topic: spec}, wait_for_metadata=True)
        except TopicAlreadyExistsError:
            return False
        return True


# -- the report ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogStatus:
    topic: str
    earliest: dict[int, int]
    latest: dict[int, int]
    retention_ms: int | None
    """``None``: unlimited (``-1``)."""
    max_token_lifetime: float
    problems: tuple[str, ...]

    @property
    def unsafe(self) -> bool:
        return bool(self.problems)


@dataclass(frozen=True, slots=True)
class StateStatus:
    topic: str
    exists: bool
    markers: dict[int, int | None]
    """State partition -> the log offset its latest marker covers (``None``: no marker)."""
    log_ends: dict[int, int]

    def lag(self, partition: int) -> int | None:
        """Log records not yet covered by the state partition's marker."""
        marker = self.markers.get(partition)
        end = self.log_ends.get(partition, 0)
        if marker is None:
            return None if end else 0
        return max(0, end - (marker + 1))


@dataclass(frozen=True, slots=True)
class Instance:
    service: str
    instance: str
    host: str
    pid: int | None
    status: str
    lag: int | None
    """Log records the instance had not applied at its last heartbeat, counted against the
    log's end *now*: records published since that heartbeat count too (``None``: it
    reported no offsets)."""
    entries: int
    sent_at: float
    interval: float
    failures: int
    stale: bool
    heard_at: float
    """When the broker appended the heartbeat (a topic with ``LogAppendTime``, as ``--create``
    makes it), else its ``sent_at``: staleness and the window read this, so that an instance
    host's clock skew cannot make it look dead or hide that it is."""
    status_since: float
    """When the instance entered ``status``, on the same time line as ``heard_at``: its
    last heartbeat's ``heard_at`` minus the ``status_age`` it reported (how long it had
    been in ``status``, on its own monotonic clock), so no agreement between the hosts'
    clocks is needed. A heartbeat without ``status_age`` (an older SDK) gives only an
    approximation (:attr:`status_since_reported` False): ``heard_at`` of the first
    heartbeat in the window of the unbroken run reporting ``status``, a lower bound of how
    long it lasts (off by up to one ``interval``, and never earlier than the window's
    start)."""
    reported_lag: int | None = None
    """The lag the instance reported itself at its last heartbeat: the log ends it had seen
    then (``end_offsets``) minus its offsets, summed over partitions; unlike :attr:`lag`,
    not inflated by what was published since (``None``: no ``end_offsets`` in the
    heartbeat)."""
    status_since_reported: bool = False
    """Whether :attr:`status_since` comes from the instance's ``status_age``; False: the
    approximation from the heartbeats in the window."""
    host_status_since: float | None = None
    """The heartbeat's ``status_since``: when the instance entered ``status`` by its host's
    wall clock, to match that host's logs; not used to judge (``None``: not reported)."""
    error_kind: str | None = None
    """The kind of the instance's last error (``SourceErrorKind`` value, such as
    ``kafka_unauthorized``), never its text, which stays in the instance's log (``None``: no
    error, or an older SDK that does not report it)."""

    def status_lasted(self, now: float) -> float:
        """Seconds the instance has been in ``status`` at ``now``; for a stale instance, up
        to when it was last heard, since what it does after that is unknown."""
        until = self.heard_at if self.stale else now
        return max(0.0, until - self.status_since)


@dataclass(frozen=True, slots=True)
class StatusReport:
    now: float
    log: LogStatus
    state: StateStatus
    heartbeat_topic: str
    heartbeat_topic_exists: bool
    window: float
    instances: tuple[Instance, ...]
    unreadable_heartbeats: int = 0

    @property
    def ok(self) -> bool:
        return not self.log.unsafe

    def render(self) -> str:
        return "\n".join([*_render_log(self.log), *_render_state(self.state), *_render_sdks(self)])

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``revocast status --json``)."""
        log, state = self.log, self.state
        return {
            "now": self.now,
            "log": {
                "topic": log.topic,
                "retention_ms": log.retention_ms,
                "max_token_lifetime": log.max_token_lifetime,
                "unsafe": log.unsafe,
                "problems": list(log.problems),
                "partitions": [
                    {"partition": p, "earliest": log.earliest[p], "latest": log.latest[p]}
                    for p in sorted(log.latest)
                ],
            },
            "state": {
                "topic": state.topic,
                "exists": state.exists,
                "partitions": [
                    {
                        "partition": p,
                        "marker": state.markers.get(p),
                        "log_end": state.log_ends[p],
                        "lag": state.lag(p),
                    }
                    for p in sorted(state.log_ends)
                ]
                if state.exists
                else [],
            },
            "heartbeats": {
                "topic": self.heartbeat_topic,
                "exists": self.heartbeat_topic_exists,
                "window": self.window,
                "unreadable": self.unreadable_heartbeats,
                "instances": [
                    {**dataclasses.asdict(i), "status_for": i.status_lasted(self.now)}
                    for i in self.instances
                ],
            },
        }


def human_duration(seconds: float) -> str:
    """``90`` -> ``1.5m``: three significant digits in the largest unit that fits."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.3g}{unit}"
    return f"{seconds:.3g}s"


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _render_log(log: LogStatus) -> list[str]:
    retention = "unlimited" if log.retention_ms is None else human_duration(log.retention_ms / 1000)
    verdict = "UNSAFE" if log.unsafe else "ok"
    lines = [
        f"log topic {log.topic}: {len(log.latest)} partitions, retention {retention} "
        f"(max token lifetime {human_duration(log.max_token_lifetime)}, needs >= "
        f"{human_duration(min_retention(log.max_token_lifetime))}): {verdict}"
    ]
    lines += [f"  UNSAFE: {problem}" for problem in log.problems]
    rows = [(str(p), str(log.earliest[p]), str(log.latest[p])) for p in sorted(log.latest)]
    return lines + _table(("PARTITION", "EARLIEST", "LATEST"), rows)


def _render_state(state: StateStatus) -> list[str]:
    if not state.exists:
        return [
            f"state topic {state.topic}: absent (SDKs bootstrap by replaying the log; "
            "run the streams worker or 'revocast rebuild-state')"
        ]
    rows = []
    for p in sorted(state.log_ends):
        marker = state.markers.get(p)
        lag = state.lag(p)
        rows.append(
            (
                str(p),
                "-" if marker is None else str(marker),
                str(state.log_ends[p]),
                "no marker" if lag is None else str(lag),
            )
        )
    behind = sum(state.lag(p) or 0 for p in state.log_ends)
    header = ("PARTITION", "MARKER", "LOG END", "LAG")
    return [f"state topic {state.topic}: {behind} log records behind", *_table(header, rows)]


def _render_sdks(report: StatusReport) -> list[str]:
    window = human_duration(report.window)
    head = f"SDK instances (heartbeats on {report.heartbeat_topic}, last {window})"
    if not report.heartbeat_topic_exists:
        return [f"{head}: heartbeat topic absent (create it: revocast status --create)"]
    stale = sum(i.stale for i in report.instances)
    lines = [f"{head}: {len(report.instances)} instances, {stale} stale"]
    if report.unreadable_heartbeats:
        lines.append(f"  ({report.unreadable_heartbeats} unreadable heartbeat records skipped)")
    if not all(i.status_since_reported for i in report.instances):
        lines.append(
            "  (FOR >=: at least that long; those heartbeats do not say since when (an older "
            "SDK), so it counts from the first one heard in the window)"
        )
    rows = [
        (
            i.service,
            i.instance,
            f"{i.host}/{i.pid}",
            i.status.upper() + ("" if i.error_kind is None else f" ({i.error_kind})"),
            ("" if i.status_since_reported else ">=") + human_duration(i.status_lasted(report.now)),
            "-" if i.lag is None else str(i.lag),
            str(i.entries),
            f"{human_duration(max(0.0, report.now - i.heard_at))} ago"
            + (" STALE" if i.stale else ""),
        )
        for i in report.instances
    ]
    header = ("SERVICE", "INSTANCE", "HOST/PID", "STATUS", "FOR", "LAG", "ENTRIES", "LAST HEARD")
    return lines + (_table(header, rows) if rows else ["  (none)"])


# -- collecting ---------------------------------------------------------------------------


def _log_status(
    admin: Any, consumer: Any, kafka: KafkaSettings, max_token_lifetime: float
) -> LogStatus:
    topic = kafka.topic
    if topic_partitions(admin, topic) is None:
        raise OpsKafkaError(f"topic {topic!r} does not exist")
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    timeout = kafka.request_timeout_ms
    earliest = consumer.beginning_offsets(tps, timeout_ms=timeout)
    latest = consumer.end_offsets(tps, timeout_ms=timeout)
    names = ["retention.ms", "retention.bytes", "cleanup.policy"]
    described = admin.describe_configs([ConfigResource("TOPIC", topic, names)])
    raw = described["topic"][topic]
    configs = {name: str(raw[name]["value"]) for name in names if name in raw}
    retention_ms = int(configs.get("retention.ms", "-1"))
    floor = min_retention(max_token_lifetime)
    problems = []
    if retention_ms != -1 and retention_ms < floor * 1000:
        problems.append(
            f"retention {human_duration(retention_ms / 1000)} is shorter than twice the max token "
            f"lifetime ({human_duration(floor)}): an SDK replaying the log misses revocations of "
            "tokens that are still valid"
        )
    if int(configs.get("retention.bytes", "-1")) != -1:
        problems.append(f"retention.bytes={configs['retention.bytes']} can delete revocations")
    if "compact" in configs.get("cleanup.policy", "delete"):
        problems.append("cleanup.policy includes compact: earlier revocations get dropped")
    return LogStatus(
        topic=topic,
        earliest={tp.partition: earliest[tp] for tp in tps},
        latest={tp.partition: latest[tp] for tp in tps},
        retention_ms=None if retention_ms == -1 else retention_ms,
        max_token_lifetime=max_token_lifetime,
        problems=tuple(problems),
    )


def _state_status(
    admin: Any, consumer: Any, kafka: KafkaSettings, log: LogStatus, topic: str
) -> StateStatus:
    if topic_partitions(admin, topic) is None:
        return StateStatus(topic, exists=False, markers={}, log_ends=dict(log.latest))
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    timeout = kafka.request_timeout_ms
    ends = consumer.end_offsets(tps, timeout_ms=timeout)
    # The last valid marker of each partition (one malformed or naming another log is passed
    # over, as the SDK does), read back from the end as the SDK and the worker read it.
    found = last_markers(
        consumer,
        tps,
        ends,
        kafka.topic,
        stop=lambda: False,
        poll_timeout_ms=500,
        request_timeout_ms=timeout,
    )
    markers = {
        tp.partition: found[tp.partition].offset if tp.partition in found else None for tp in tps
    }
    return StateStatus(topic, exists=True, markers=markers, log_ends=dict(log.latest))


def _finite(value: Any) -> float:
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {number}")
    return number


def _seconds(value: Any) -> float:
    number = _finite(value)
    if number < 0:
        raise ValueError(f"not a duration: {number}")
    return number


def _text(value: Any, limit: int = 64) -> str:
    """A heartbeat field fit for one table cell: anyone may write to the topic, so control
    characters (a newline forging a row, an escape sequence driving the terminal) become
    ``?`` and the length is capped."""
    text = "".join(c if c.isprintable() else "?" for c in str(value)[: limit + 1])
    return text if len(text) <= limit else text[: limit - 1] + "~"


def _instance(
    doc: dict[str, Any], log: LogStatus, now: float, stale: float | None, appended: float | None
) -> Instance:
    offsets = {int(p): int(o) for p, o in (doc.get("offsets") or {}).items()}
    ends = {int(p): int(o) for p, o in (doc.get("end_offsets") or {}).items()}
    lag = _behind(offsets, {}, log) if offsets else None
    reported_lag = _behind(offsets, ends, log) if offsets and ends else None
    interval = _finite(doc.get("interval") or 0.0)
    sent_at = _finite(doc["sent_at"])
    heard_at = sent_at if appended is None else appended
    age = doc.get("status_age")
    status_age = None if age is None else _seconds(age)
    host_since = doc.get("status_since")
    threshold = stale if stale is not None else 3 * interval
    status = _text(doc.get("status", "?"))
    pid = doc.get("pid")
    return Instance(
        service=_text(doc.get("service", "?")),
        instance=_text(doc["instance"]),
        host=_text(doc.get("host", "?")),
        pid=None if pid is None else int(pid),
        status=status,
        lag=lag,
        entries=sum(int(n) for n in (doc.get("entries") or {}).values()),
        sent_at=sent_at,
        interval=interval,
        failures=int(doc.get("failures") or 0),
        # A closed instance said goodbye: it is off, not stale.
        stale=status != "off" and now - heard_at > threshold,
        heard_at=heard_at,
        status_since=heard_at if status_age is None else heard_at - status_age,
        reported_lag=reported_lag,
        status_since_reported=status_age is not None,
        host_status_since=None if host_since is None else _finite(host_since),
        error_kind=None if doc.get("error_kind") is None else _text(doc["error_kind"]),
    )


def _behind(offsets: dict[int, int], ends: dict[int, int], log: LogStatus) -> int:
    """Log records not applied, summed over the log's partitions: the end in ``ends`` (else
    the log's end now) minus the instance's offset. A log partition the instance reports no
    offset for (one added since it last looked) counts whole: it has applied none of it."""
    return sum(
        max(0, ends.get(p, end) - offsets.get(p, log.earliest.get(p, 0)))
        for p, end in log.latest.items()
    )


def _instances(
    kafka: KafkaSettings,
    topic: str,
    log: LogStatus,
    *,
    now: float,
    window: float,
    stale: float | None,
) -> tuple[tuple[Instance, ...], int]:
    latest: dict[str, tuple[int, Instance]] = {}
    unreadable = 0
    since_ms = max(0, int((now - window) * 1000))  # Kafka refuses a time before 1970
    for record in read_range(kafka, topic, since_ms=since_ms):
        # Anything may be on the topic (another SDK version, a stray producer): a record
        # that does not parse is counted, never a crash of the command.
        try:
            doc = json.loads(record.value)
            appended = (
                record.timestamp / 1000 if record.timestamp_type == _LOG_APPEND_TIME else None
            )
            beat = _instance(doc, log, now, stale, appended)
            if doc.get("topic", log.topic) != log.topic:
                continue
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError, RecursionError):
            unreadable += 1
            continue
        if beat.heard_at < now - window:
            continue
        # An instance's heartbeats share its key, so one partition, read in order: the later
        # record is the newer one, whatever its sent_at says (a host clock stepped back, a
        # record dated in the future). The time it was heard decides only across partitions.
        previous = latest.get(beat.instance)
        if (
            previous is None
            or previous[0] == record.partition
            or beat.heard_at >= previous[1].heard_at
        ):
            if (
                previous is not None
                and previous[1].status == beat.status
                and not beat.status_since_reported
            ):
                beat = dataclasses.replace(beat, status_since=previous[1].status_since)
            latest[beat.instance] = (record.partition, beat)
    found = [beat for _, beat in latest.values()]
    found.sort(key=lambda i: (i.service, i.host, i.pid or 0, i.instance))
    return tuple(found), unreadable


def collect_status(
    kafka: KafkaSettings,
    *,
    max_token_lifetime: float,
    heartbeat_topic: str | None = None,
    state_topic: str | None = None,
    window: float = 600.0,
    stale: float | None = None,
    clock: Callable[[], float] = time.time,
) -> StatusReport:
    """Everything ``revocast status`` prints. ``state_topic``: as the worker's and the SDKs'
    ``REVOCAST_STATE_TOPIC`` (default ``<log>.state``). ``stale``: seconds after which an
    instance's last heartbeat is stale (default: three of its own heartbeat intervals)."""
    beats = heartbeat_topic or f"{kafka.topic}.heartbeats"
    state_topic, _ = derived_topics(kafka.topic, state_topic=state_topic)
    with kafka_admin(kafka) as admin:
        consumer = _consumer(kafka)
        try:
            log = _log_status(admin, consumer, kafka, max_token_lifetime)
            state = _state_status(admin, consumer, kafka, log, state_topic)
        except KafkaError as exc:
            raise OpsKafkaError(f"Kafka: {type(exc).__name__}: {exc}") from exc
        finally:
            consumer.close()
        beats_exist = topic_partitions(admin, beats) is not None
    now = clock()
    instances, unreadable = (
        _instances(kafka, beats, log, now=now, window=window, stale=stale)
        if beats_exist
        else ((), 0)
    )
    return StatusReport(
        now=now,
        log=log,
        state=state,
        heartbeat_topic=beats,
        heartbeat_topic_exists=beats_exist,
        window=window,
        instances=instances,
        unreadable_heartbeats=unreadable,
    )
