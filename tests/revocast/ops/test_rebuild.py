"""``rebuild_state``: the state topic it writes, applied like an SDK applies it, equals the
state replayed from the log; old state is kept or dropped as asked; it never races a worker."""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import ConfigResource, NewTopic
from kafka.errors import (
    ClusterAuthorizationFailedError,
    CoordinatorLoadInProgressError,
    CoordinatorNotAvailableError,
    GroupAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)

from consumer_sdk import RevocationState, decode_and_apply
from consumer_sdk._snapshot_reader import topic_id
from revocast.ops import (
    ForeignStateTopicError,
    OpsKafkaError,
    OpsSettings,
    StreamsWorkerRunningError,
    StreamsWorkerUnknownError,
    UnverifiableRecordsError,
    read_range,
    rebuild_state,
    replay_log,
    running_workers,
)
from revocation_events import (
    Event,
    EventCodec,
    EventSigner,
    KafkaSettings,
    KeyRevoked,
    MalformedEventError,
    SigningKey,
    SubjectBlocked,
    SubjectTokensRevoked,
    SubjectUnblocked,
    TokenRevoked,
)
from streams import StreamsSettings
from streams._records import marker_record
from streams._topics import state_topic_config
from tests._kafka_fixtures import MakeTopic

KEY = SigningKey.hmac("rebuild", os.urandom(32))
CODEC = EventCodec(signer=EventSigner(KEY))
NOW = time.time()


def clock() -> float:
    return NOW


def later(minutes: float) -> datetime:
    return datetime.fromtimestamp(NOW, UTC) + timedelta(minutes=minutes)


def send(producer: KafkaProducer, topic: str, event: Event, partition: int) -> None:
    record = CODEC.encode(event)
    producer.send(
        topic, key=record.key, value=record.value, headers=list(record.headers), partition=partition
    )


@pytest.fixture
def producer(kafka_bootstrap: str) -> Iterator[KafkaProducer]:
    p = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all", linger_ms=5)
    yield p
    p.close(timeout=10)


@pytest.fixture
def log(kafka_bootstrap: str, make_topic: MakeTopic) -> Iterator[str]:
    """A 3-partition log; its ``.state`` topic is deleted afterwards."""
    name = make_topic(partitions=3)
    yield name
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        with contextlib.suppress(UnknownTopicOrPartitionError):
            admin.delete_topics([f"{name}.state"], timeout_ms=30_000)
    finally:
        admin.close()


def ops_settings(bootstrap: str, topic: str) -> OpsSettings:
    return OpsSettings(
        kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
        event_keys=(KEY.verification_key(),),
        max_token_lifetime=3600,
    )


def fill_log(producer: KafkaProducer, topic: str) -> None:
    revoked = TokenRevoked(issuer="t", jti="j1", sub="alice", expires_at=later(30))
    forged = EventCodec(signer=EventSigner(SigningKey.hmac("rebuild", os.urandom(32))))
    events: list[tuple[Event, int]] = [
        (revoked, 0),
        (revoked, 0),  # duplicate
        (TokenRevoked(issuer="t", jti="j1", expires_at=later(50)), 1),  # same jti, other part.
        (TokenRevoked(issuer="t", jti="gone", expires_at=later(-6)), 0),  # already expired
        (
            SubjectTokensRevoked(
                issuer="t", sub="bob", issued_before=later(-2), expires_at=later(58)
            ),
            2,
        ),
        (
            SubjectTokensRevoked(
                issuer="t", sub="bob", issued_before=later(-9), expires_at=later(51)
            ),
            2,
        ),
        (SubjectBlocked(issuer="t", sub="carol", occurred_at=later(-3)), 1),
        (SubjectUnblocked(issuer="t", sub="carol", occurred_at=later(-1), expires_at=later(59)), 1),
        (SubjectBlocked(issuer="t", sub="mallory"), 2),
        (KeyRevoked(issuer="t", kid="k-old"), 0),
    ]
    for event, partition in events:
        send(producer, topic, event, partition)
    bad = forged.encode(SubjectBlocked(issuer="t", sub="dave"))
    producer.send(topic, value=bad.value, headers=list(bad.headers), partition=0)
    producer.flush()


def state_records(settings: OpsSettings) -> list[Any]:
    return list(read_range(settings.kafka, f"{settings.kafka.topic}.state", since_ms=None))


def apply_state_topic(settings: OpsSettings) -> RevocationState:
    """What an SDK bootstrapping from the state topic applies: rule records, no markers."""
    state = RevocationState(clock=clock, max_token_lifetime=settings.max_token_lifetime)
    for record in state_records(settings):
        if record.key.startswith(b"__") or record.value is None:
            continue
        with contextlib.suppress(MalformedEventError):  # counted and skipped by the SDK
            decode_and_apply(settings.codec(), state, record.value, record.headers)
    return state


@pytest.mark.kafka
def test_rebuilt_state_topic_applied_in_an_sdk_equals_replaying_the_log(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    fill_log(producer, log)
    settings = ops_settings(kafka_bootstrap, log)

    report = rebuild_state(settings, clock=clock)

    assert report.created_topic
    assert report.log_records == 11
    assert report.skipped == {"log:bad_signature": 1}
    replayed = replay_log(settings, from_beginning=True, clock=clock).state
    assert apply_state_topic(settings).snapshot() == replayed.snapshot()
    records = state_records(settings)
    keys = sorted((r.partition, r.key.decode()) for r in records)
    # One winner per rule and partition; the expired jti and the superseded records are gone.
    assert keys == [
        (0, "__offsets__:0"),
        (0, "jti:j1"),
        (0, "kid:k-old"),
        (1, "__offsets__:1"),
        (1, "jti:j1"),
        (1, "sub-block:carol"),
        (2, "__offsets__:2"),
        (2, "sub-block:mallory"),
        (2, "sub-wm:bob"),
    ]
    winner = next(r for r in records if r.key == b"sub-block:carol")
    assert json.loads(winner.value)["type"] == "subject.unblocked"


@pytest.mark.kafka
def test_each_marker_comes_after_the_rules_it_covers_and_covers_the_whole_log(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    fill_log(producer, log)
    settings = ops_settings(kafka_bootstrap, log)
    report = rebuild_state(settings, clock=clock)
    records = state_records(settings)
    for partition in range(3):
        in_order = [r for r in records if r.partition == partition]
        assert in_order[-1].key == f"__offsets__:{partition}".encode()
        assert json.loads(in_order[-1].value) == {
            "topic": log,
            "topic_id": str(log_topic_id(kafka_bootstrap, log)),
            "partition": partition,
            "offset": report.markers[partition],
        }
    assert report.markers == {0: 4, 1: 2, 2: 2}


def log_topic_id(bootstrap: str, topic: str) -> uuid.UUID:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        found = topic_id(consumer, topic)
    finally:
        consumer.close()
    assert found is not None, "this broker gives topic ids (Kafka 2.8+)"
    return found


@pytest.mark.kafka
def test_a_state_topic_whose_markers_name_another_incarnation_of_the_log_is_not_merged(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    """A ``<log>.state`` left behind when the log was deleted and recreated: merging it would
    carry the old log's rules (blocks, revoked keys never expire) into markers of the new one,
    which SDKs then trust. The rebuild refuses before writing; deleting the topic is the fix."""
    fill_log(producer, log)
    settings = ops_settings(kafka_bootstrap, log)
    rebuild_state(settings, clock=clock)  # creates the state topic; its markers name this log
    rebuild_state(settings, clock=clock)  # and they are accepted
    old = marker_record(log, 0, 3, topic_id=uuid.uuid4())  # as the old log's worker wrote it
    producer.send(f"{log}.state", key=old.key, value=old.value, partition=0)
    producer.flush()
    before = state_records(settings)
    for log_only in (False, True):
        with pytest.raises(ForeignStateTopicError, match=r"partitions \[0\].*delete it"):
            rebuild_state(settings, log_only=log_only, clock=clock)
    assert len(state_records(settings)) == len(before), "something was written"


@pytest.mark.kafka
def test_rules_only_the_old_state_holds_are_kept_unless_log_only_and_expired_ones_get_tombstones(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        admin.create_topics(
            [NewTopic(f"{log}.state", 3, 1, topic_configs={"cleanup.policy": "compact"})],
            wait_for_metadata=True,
        )
    finally:
        admin.close()
    # The log no longer holds this key revocation (retention), only the state topic does.
    aged_out = CODEC.encode(KeyRevoked(issuer="t", kid="k-ancient"))
    expired = CODEC.encode(TokenRevoked(issuer="t", jti="old", expires_at=later(-6)))
    for key, record in ((b"kid:k-ancient", aged_out), (b"jti:old", expired)):
        producer.send(
            f"{log}.state", key=key, value=record.value, headers=list(record.headers), partition=0
        )
    # A record no worker writes (a key that is not UTF-8): counted, left alone, no traceback.
    producer.send(f"{log}.state", key=b"\xff\xfe", value=b"foreign", partition=0)
    send(producer, log, KeyRevoked(issuer="t", kid="k-new"), 0)
    producer.flush()
    settings = ops_settings(kafka_bootstrap, log)

    kept = rebuild_state(settings, clock=clock)
    assert not kept.created_topic
    assert (kept.rules_written, kept.tombstones) == (2, 1)
    assert kept.skipped["state_key_not_utf8"] == 1
    assert apply_state_topic(settings).check({"sub": "x", "iat": NOW}, "k-ancient") is not None

    dropped = rebuild_state(settings, log_only=True, clock=clock)
    assert (dropped.rules_written, dropped.tombstones) == (1, 1)  # jti:old is gone already
    last = {r.key: r.value for r in state_records(settings)}
    assert last[b"kid:k-ancient"] is None
    assert last[b"kid:k-new"] is not None


class FakeAdmin:
    """Groups as Kafka shows them to one principal: ``groups`` are listed and described;
    ``unlisted`` ones (no Describe on them) are left out of the listing and described with
    their error, as Kafka does."""

    def __init__(
        self,
        groups: dict[str, dict[str, Any]],
        *,
        unlisted: dict[str, dict[str, Any]] | None = None,
        list_error: Exception | None = None,
        describe_errors: Sequence[Exception] = (),
    ) -> None:
        self.groups = groups
        self.unlisted = unlisted or {}
        self.list_error = list_error
        self.describe_errors = list(describe_errors)
        """Raised by the next calls of describe_groups, one each."""
        self.describes = 0

    def list_groups(self) -> list[dict[str, str]]:
        if self.list_error is not None:
            raise self.list_error
        return [{"group_id": g} for g in self.groups]

    def describe_groups(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        self.describes += 1
        if self.describe_errors:
            raise self.describe_errors.pop(0)
        known = {**self.groups, **self.unlisted}
        return {g: known[g] for g in ids}


def failed(error: str) -> dict[str, Any]:
    """A group DescribeGroups answers with an error code (kafka-python's wording)."""
    return {"group_state": "Dead", "protocol_data": "", "members": [], "error": error}


DENIED = "[Error 30] GroupAuthorizationFailedError: Not authorized to access group"
NOT_FOUND = "[Error 69] GroupIdNotFoundError: Group revocast-streams not found."


def group(state: str, protocol: str, *topics: str) -> dict[str, Any]:
    assigned = [{"topic": t, "partitions": [0]} for t in topics]
    member = {"member_assignment": {"assigned_partitions": assigned}}
    return {"group_state": state, "protocol_data": protocol, "members": [member]}


def test_only_an_active_faust_group_on_the_log_counts_as_a_running_worker() -> None:
    admin = FakeAdmin(
        {
            "worker": group("Stable", "faust", "log", "worker-ticks"),
            "stopped": {"group_state": "Empty", "protocol_data": "", "members": []},
            "other-log": group("Stable", "faust", "another-log"),
            "plain-reader": group("Stable", "range", "log"),
        }
    )
    assert running_workers(admin, "log") == ["worker"]


def test_a_worker_group_this_principal_may_not_describe_is_not_taken_for_no_worker() -> None:
    """Without Describe on the worker's group, Kafka leaves it out of the listing: the group
    is described by name, and its authorization error stops the rebuild."""
    admin = FakeAdmin({}, unlisted={"revocast-streams": failed(DENIED)})
    with pytest.raises(StreamsWorkerUnknownError, match="GroupAuthorizationFailedError"):
        running_workers(admin, "log", groups=["revocast-streams"])


def test_a_listed_group_that_cannot_be_described_stops_the_rebuild_unless_a_worker_is_found() -> (
    None
):
    admin = FakeAdmin({"other": failed("[Error 15] CoordinatorNotAvailableError: ")})
    with pytest.raises(StreamsWorkerUnknownError, match="other"):
        running_workers(admin, "log")
    admin.groups["worker"] = group("Stable", "faust", "log")
    assert running_workers(admin, "log") == ["worker"]


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_coordinator_not_available_yet_is_waited_for_within_the_bound() -> None:
    # A new cluster, or a coordinator moving: the rebuild stopped with "cannot describe".
    clock = FakeTime()
    admin = FakeAdmin(
        {"worker": group("Stable", "faust", "log")},
        describe_errors=[CoordinatorNotAvailableError(), CoordinatorLoadInProgressError()],
    )
    workers = running_workers(
        admin, "log", retry_for=10, sleep=clock.sleep, clock=lambda: clock.now
    )
    assert workers == ["worker"]
    assert admin.describes == 3
    assert 0 < clock.now < 10


def test_a_coordinator_still_unavailable_after_the_bound_stops_the_rebuild() -> None:
    clock = FakeTime()
    admin = FakeAdmin(
        {"worker": group("Stable", "faust", "log")},
        describe_errors=[CoordinatorNotAvailableError()] * 100,
    )
    with pytest.raises(StreamsWorkerUnknownError, match="CoordinatorNotAvailableError"):
        running_workers(admin, "log", retry_for=5, sleep=clock.sleep, clock=lambda: clock.now)
    assert clock.now == pytest.approx(5)  # never slept past the bound
    assert max(clock.slept) <= 1.0


def test_an_error_that_is_not_retriable_stops_the_rebuild_at_once() -> None:
    clock = FakeTime()
    admin = FakeAdmin({}, describe_errors=[GroupAuthorizationFailedError()])
    with pytest.raises(StreamsWorkerUnknownError, match="GroupAuthorizationFailedError"):
        running_workers(
            admin, "log", groups=["revocast-streams"], sleep=clock.sleep, clock=lambda: clock.now
        )
    assert (admin.describes, clock.slept) == (1, [])


def test_groups_that_cannot_be_listed_stop_the_rebuild() -> None:
    admin = FakeAdmin({}, list_error=ClusterAuthorizationFailedError("no Describe on cluster"))
    with pytest.raises(StreamsWorkerUnknownError, match="cannot list consumer groups"):
        running_workers(admin, "log", groups=["revocast-streams"])


def test_a_worker_group_that_does_not_exist_is_no_running_worker() -> None:
    admin = FakeAdmin({}, unlisted={"revocast-streams": failed(NOT_FOUND)})
    assert running_workers(admin, "log", groups=["revocast-streams"]) == []


@pytest.mark.kafka
def test_the_broker_answer_for_a_worker_group_that_does_not_exist_is_no_running_worker(
    kafka_bootstrap: str, log: str
) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert running_workers(admin, log, groups=[f"{log}-no-such-worker"]) == []
    finally:
        admin.close()


class DeniedGroups:
    """A real admin client, as a principal without Describe on ``denied`` sees the cluster:
    those groups are missing from the listing, and asking about them is refused."""

    def __init__(self, admin: Any, denied: set[str]) -> None:
        self._admin = admin
        self._denied = denied

    def __getattr__(self, name: str) -> Any:
        return getattr(self._admin, name)

    def list_groups(self) -> list[dict[str, Any]]:
        return [g for g in self._admin.list_groups() if g["group_id"] not in self._denied]

    def describe_groups(self, ids: list[str]) -> dict[str, Any]:
        if self._denied.intersection(ids):
            raise GroupAuthorizationFailedError("FindCoordinator refused")
        return dict(self._admin.describe_groups(ids))


@pytest.mark.kafka
def test_rebuild_refuses_when_it_cannot_see_the_workers_group_and_runs_with_force(
    kafka_bootstrap: str, log: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import revocast.ops._rebuild as rebuild
    from revocast.ops._status import kafka_admin

    @contextlib.contextmanager
    def denied(kafka: KafkaSettings) -> Iterator[Any]:
        with kafka_admin(kafka) as admin:
            yield DeniedGroups(admin, {"revocast-streams"})

    monkeypatch.setattr(rebuild, "kafka_admin", denied)
    settings = ops_settings(kafka_bootstrap, log)
    with pytest.raises(StreamsWorkerUnknownError, match="Describe on the worker's group"):
        rebuild_state(settings, clock=clock)
    with pytest.raises(OpsKafkaError, match="does not exist"):
        state_records(settings)  # refused before creating or writing anything
    assert rebuild_state(settings, force=True, clock=clock).created_topic


@pytest.mark.kafka
def test_rebuild_refuses_while_a_streams_worker_consumes_the_log(
    kafka_bootstrap: str, log: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import revocast.ops._rebuild as rebuild

    monkeypatch.setattr(
        rebuild, "running_workers", lambda admin, topic, groups: ["revocast-streams"]
    )
    with pytest.raises(StreamsWorkerRunningError, match="revocast-streams"):
        rebuild_state(ops_settings(kafka_bootstrap, log), clock=clock)


@pytest.mark.kafka
def test_a_rule_within_the_sdk_leeway_past_its_expiry_is_rebuilt_and_not_tombstoned(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    """An SDK with a leeway still refuses the token ``leeway`` seconds past its ``exp``;
    bootstrapping from the rebuilt state topic it skips the log record behind the marker,
    so the rule must be in the state topic until the largest leeway has passed."""
    send(producer, log, TokenRevoked(issuer="t", jti="in-leeway", expires_at=later(-1)), 0)
    producer.flush()
    settings = ops_settings(kafka_bootstrap, log)
    report = rebuild_state(settings, log_only=True, clock=clock)
    assert (report.rules_written, report.expired) == (1, 0)
    sdk = RevocationState(clock=clock, max_token_lifetime=3600, grace=120)
    for record in state_records(settings):
        if not record.key.startswith(b"__") and record.value is not None:
            decode_and_apply(settings.codec(), sdk, record.value, record.headers)
    assert sdk.check({"jti": "in-leeway", "exp": NOW - 60, "iat": NOW - 600}, None) is not None


def test_records_signed_by_a_key_the_command_lacks_stop_the_rebuild_before_any_write(
    kafka_bootstrap: str, log: str, producer: KafkaProducer
) -> None:
    """A key rotation half rolled out: services that trust the new key apply its events from
    the log; a marker past one (written by a rebuild that could only drop it) made SDKs
    bootstrapping from the state topic skip it."""
    send(producer, log, TokenRevoked(issuer="t", jti="known", expires_at=later(30)), 0)
    rotated = EventCodec(signer=EventSigner(SigningKey.hmac("rotated", os.urandom(32))))
    record = rotated.encode(TokenRevoked(issuer="t", jti="new-key", expires_at=later(30)))
    producer.send(log, value=record.value, headers=list(record.headers), partition=0)
    producer.flush()
    settings = ops_settings(kafka_bootstrap, log)
    with pytest.raises(UnverifiableRecordsError, match="1 record"):
        rebuild_state(settings, log_only=True, clock=clock)
    assert list(state_records(settings)) == [], "a marker or rule was written"


def with_worker(settings: OpsSettings, **worker: Any) -> OpsSettings:
    streams = StreamsSettings(kafka=settings.kafka, verification_keys=settings.event_keys, **worker)
    return OpsSettings(
        kafka=settings.kafka,
        event_keys=settings.event_keys,
        max_token_lifetime=settings.max_token_lifetime,
        streams=streams,
    )


@pytest.mark.kafka
def test_a_missing_state_topic_is_created_with_the_workers_compaction_settings(
    kafka_bootstrap: str, log: str
) -> None:
    settings = with_worker(
        ops_settings(kafka_bootstrap, log),
        state_segment_ms=123_000,
        state_min_compaction_lag_ms=4_000,
        state_delete_retention_ms=5_000,
    )
    assert rebuild_state(settings, clock=clock).created_topic
    wanted = state_topic_config(settings.worker_settings())
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        described = admin.describe_configs([ConfigResource("TOPIC", f"{log}.state", list(wanted))])
        (meta,) = admin.describe_topics([f"{log}.state"])
    finally:
        admin.close()
    got = described["topic"][f"{log}.state"]
    assert {name: str(got[name]["value"]) for name in wanted} == wanted
    assert wanted["segment.ms"] == "123000"
    assert len(meta["partitions"]) == 3
    assert {len(p["replica_nodes"]) for p in meta["partitions"]} == {1}


@pytest.mark.kafka
def test_a_replication_factor_the_cluster_cannot_meet_is_refused_as_the_worker_would(
    kafka_bootstrap: str, log: str
) -> None:
    """The worker asks for ``REVOCAST_STREAMS_REPLICATION_FACTOR`` replicas and fails when the
    cluster has too few brokers; the rebuild must not quietly settle for fewer."""
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()
    settings = with_worker(ops_settings(kafka_bootstrap, log), replication_factor=brokers + 1)
    with pytest.raises(OpsKafkaError, match=f"replication factor {brokers + 1}"):
        rebuild_state(settings, clock=clock)


@pytest.mark.kafka
def test_a_missing_state_topic_gets_the_workers_auto_replication(
    kafka_bootstrap: str, log: str
) -> None:
    """With REVOCAST_STREAMS_REPLICATION_FACTOR unset, the rebuild resolves it as the worker
    does (min(3, brokers): 1 on the session's single broker) and sets min.insync.replicas
    on the topic as the worker does, instead of leaving the broker's default."""
    settings = ops_settings(kafka_bootstrap, log)
    assert settings.worker_settings().replication_factor is None
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        assert len(admin.describe_cluster()["brokers"]) == 1, "needs a single-broker cluster"
        assert rebuild_state(settings, clock=clock).created_topic
        (meta,) = admin.describe_topics([f"{log}.state"])
        # Only settings made on the topic itself, not the broker's defaults.
        described = admin.describe_configs(
            [ConfigResource("TOPIC", f"{log}.state", ["min.insync.replicas"])]
        )
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for p in meta["partitions"]} == {1}
    entry = described["topic"][f"{log}.state"]["min.insync.replicas"]
    assert (entry["value"], entry["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG")
