"""The faust app: ``faust -A streams.app worker -l info --without-web`` (``revocast streams``).

faust's worker command decides about the web server (``--without-web``; by default it
listens on port 6066).

Importing this module does nothing; reading its ``app`` attribute (which faust's ``-A`` does)
reads :class:`StreamsSettings` from the environment, checks the log topic and creates the
output topics, then builds the app with :func:`create_app`.

With ``REVOCAST_SNAPSHOT_SIGNING_KEY`` set, the worker also runs the snapshotter
(:mod:`streams._snapshot`) in a thread: it writes packed, signed snapshots to
``<log>.snapshots`` for the log partitions faust assigns to this worker (docs/snapshots.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from functools import cache, partial
from typing import Any

import faust
from faust.types import TP, CodecArg, FutureMessage

from revocation_events import RevocastError
from streams._faust_config import faust_credentials, faust_options
from streams._keepalive import polling
from streams._processor import SEED_STEP, Processor
from streams._records import Output
from streams._seed import log_incarnation, read_state
from streams._settings import StreamsSettings
from streams._snapshot import Snapshotter
from streams._topics import StreamsError, prepare_topics, resume_offsets

__all__ = ["create_app"]

logger = logging.getLogger("streams")

_ALERT_KINDS = ("subject.blocked", "global.tokens_revoked")
_READ_ATTEMPTS = 4
_READ_RETRY_SECONDS = 2.0
"""On assignment, the state topic is read up to this many times, waiting this long (then
twice as long each time) between attempts, before the partitions are held: a lone worker
gets no other assignment, so a blip of the cluster would hold them until a restart."""


def create_app(
    settings: StreamsSettings,
    *,
    partitions: int,
    broker: str | None = None,
    topic_id: uuid.UUID | None = None,
) -> Any:
    """Build the faust app for a log topic with ``partitions`` partitions.

    ``broker`` overrides the Kafka URLs (``memory://`` in offline tests). The output topics
    must exist, and ``settings`` carry the resolved replication factor (both done by
    :func:`streams._topics.prepare_topics`; unresolved, faust's own topics get 1 replica).
    ``topic_id``: the id of the log's incarnation (KIP-516), stamped on offset markers; given,
    it is asked afresh on every assignment, and a state topic or rules table of another
    incarnation (the log deleted and recreated under the same name) is not trusted: the
    partition is re-read from the new log's start. ``None`` (a broker without topic ids):
    neither is checked.
    """
    options, left_out = faust_options(settings.kafka)
    request_timeout = options.get("broker_request_timeout")
    if request_timeout is not None and request_timeout < settings.session_timeout_seconds:
        # faust refuses a consumer whose requests time out before its session does.
        logger.warning(
            "REVOCAST_KAFKA_OPTIONS request_timeout_ms=%s is below the worker's session "
            "timeout: its faust consumer waits %ss",
            settings.kafka.extra["request_timeout_ms"],
            settings.session_timeout_seconds,
        )
        options["broker_request_timeout"] = settings.session_timeout_seconds
    if left_out:
        logger.warning(
            "REVOCAST_KAFKA_OPTIONS not applied to the worker's faust clients: %s "
            "(its kafka-python clients take them)",
            ", ".join(left_out),
        )
    app: Any = faust.App(
        settings.app_id,
        broker=broker or [f"kafka://{server}" for server in settings.kafka.bootstrap_servers],
        broker_credentials=faust_credentials(settings.kafka),
        broker_client_id=settings.kafka.client_id,
        broker_commit_interval=settings.commit_interval_seconds,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        consumer_auto_offset_reset="earliest",
        store="memory://",
        datadir=settings.data_dir,
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        table_standby_replicas=0,
        stream_wait_empty=False,
        stream_publish_on_commit=False,
        producer_acks=-1,
        autodiscover=False,
        **options,
    )

    # Bytes in, bytes out: the record value is the signed payload and must stay intact.
    def raw_topic(*names: str) -> Any:
        return app.topic(
            *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
        )

    source = raw_topic(settings.log_topic, settings.ticks_topic)
    ticks = raw_topic(settings.ticks_topic)
    sinks = {
        "state": raw_topic(settings.state_topic),
        "stats": raw_topic(settings.stats_topic),
        "alerts": raw_topic(settings.alerts_topic),
    }
    # bytes key/value types make faust use the raw codec. Plain tables have compact-only
    # changelogs; see streams._windows for why the windows are not a faust windowed table.
    rules = app.tables.add(
        _TrackedTable(
            app,
            name="rules",
            default=None,
            beacon=app.tables.beacon,
            partitions=partitions,
            help=None,
            key_type=bytes,
            value_type=bytes,
        )
    )
    windows = app.Table("windows", partitions=partitions, key_type=bytes, value_type=bytes)
    thresholds = dict(
        zip(
            _ALERT_KINDS,
            (settings.alert_blocks_per_window, settings.alert_global_per_window),
            strict=True,
        )
    )
    processor = Processor(
        codec=settings.codec(),
        log_topic=settings.log_topic,
        rules=rules,
        windows=windows,
        window_seconds=settings.window_seconds,
        window_grace_seconds=settings.window_grace_seconds,
        alert_thresholds=thresholds,
        clock=time.time,
        expiry_margin=settings.expiry_margin_seconds,
        topic_id=topic_id,
    )
    # Markers wait for the table's changelog writes as well as for the state records: after
    # a restart the table must hold every effect up to the marker the worker resumes after.
    rules.on_changelog_send = processor.track

    async def publish(out: Output) -> None:
        sent = await sinks[out.sink].send(
            key=out.key,
            value=out.value,
            partition=out.partition,
            headers=list(out.headers) if out.headers else None,
        )
        if isinstance(sent, asyncio.Future):
            processor.sent(out, sent)

    async def revocations(stream: Any) -> None:
        async for event in stream.events():
            message = event.message
            partition = message.partition
            if processor.seeding(partition):
                # Inside the agent (tables change only here), a slice at a time. faust
                # fetches nothing while the agent's buffer is full, nor while its producer
                # buffer holds more than a few sends (each merged entry is a changelog
                # write): at most ten slices of writes wait, and none once the seed ends.
                async with polling(app):
                    while processor.seeding(partition):
                        processor.seed_step(partition)
                        await written(settings.session_timeout_seconds, but=10 * SEED_STEP)
                    await written(settings.session_timeout_seconds)
            try:
                if message.topic == settings.ticks_topic:
                    outputs = processor.on_tick(partition)
                else:
                    outputs = processor.on_record(
                        partition=partition,
                        offset=message.offset,
                        timestamp=message.timestamp,
                        value=message.value,
                        headers=message.headers,
                    )
                for out in outputs:
                    await publish(out)
            except BaseException:
                # Some outputs may not have been sent: the next tick repairs the partition.
                processor.resync(partition)
                raise

    async def written(timeout: float, *, but: int = 0) -> None:
        """Until the tracked writes made so far are acknowledged (or failed: the next tick
        repairs their partition) but the ``but`` last ones, or ``timeout``."""
        pending = [f for f in processor.outstanding() if isinstance(f, asyncio.Future)]
        if len(pending) > but:
            await asyncio.wait(pending[: len(pending) - but], timeout=timeout)
        else:
            await asyncio.sleep(0)

    async def send_ticks() -> None:
        # Expiry has to arrive as a stream event: faust tables change only inside an agent.
        for tp in app.consumer.assignment():
            if tp.topic == settings.log_topic:
                await ticks.send(key=None, value=b"", partition=tp.partition)

    async def log_counters() -> None:
        logger.info("revocations processed: %s", dict(sorted(processor.counters.items())))

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Let this worker's writes land before another one re-reads these partitions.
        await written(min(5.0, settings.session_timeout_seconds / 3))
        processor.forget_partitions()

    async def on_rebalance_complete(sender: Any, **kwargs: Any) -> None:
        # The tables are recovered and faust is about to seek every stream partition to its
        # committed offset and resume. Re-read each log partition from its last offset
        # marker instead: faust's committed offset may be ahead of writes lost in a crash.
        # A table not in step with that marker is seeded from the state topic first.
        generation = app.consumer_generation_id
        mine = [tp.partition for tp in app.consumer.assignment() if tp.topic == settings.log_topic]
        if not mine:
            return
        # faust fetches nothing until this returns: however long the state takes to read.
        async with polling(app):
            await resume(generation, mine)

    async def resume(generation: int, mine: list[int]) -> None:
        loop = asyncio.get_running_loop()
        delay = _READ_RETRY_SECONDS
        begins: dict[int, int] = {}
        for attempt in range(1, _READ_ATTEMPTS + 1):
            try:
                if processor.topic_id is not None:
                    # Markers stamped with the id of a log deleted since would be refused by
                    # SDKs: ask which incarnation is current now.
                    processor.topic_id, begins = await loop.run_in_executor(
                        None, log_incarnation, settings, mine
                    )
                resume = await loop.run_in_executor(None, resume_offsets, settings, mine)
                old_table = {p for p in mine if processor.other_incarnation(p)}
                behind = [
                    p for p in mine if p in old_table or processor.synced(p) != resume[p].marker
                ]
                read = read_state
                if processor.topic_id is not None:
                    read = partial(read_state, topic_id=processor.topic_id)
                seeds = await loop.run_in_executor(None, read, settings, behind)
                break
            except StreamsError as exc:
                if app.consumer_generation_id != generation:
                    return  # another rebalance started; its own completion reads again
                if attempt < _READ_ATTEMPTS:
                    logger.warning(
                        "log partitions %s: attempt %d of %d: %s; trying again in %.0fs",
                        mine,
                        attempt,
                        _READ_ATTEMPTS,
                        exc,
                        delay,
                    )
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                logger.error(
                    "log partitions %s are held (no state records, no markers) until they "
                    "are assigned again; restart the worker to retry: %s",
                    mine,
                    exc,
                )
                for p in mine:
                    processor.hold(p)
                return
        if app.consumer_generation_id != generation:
            return  # another rebalance started; its own completion resumes the partitions
        # read_state leaves out a state partition of a deleted log: re-read the new log from
        # its start, as if the state topic had no marker (begins is known: only a known topic
        # id makes read_state judge the incarnation).
        old_state = {p for p in behind if p not in seeds}
        starts = {p: begins[p] if p in old_state else r.start for p, r in resume.items()}
        offsets = {TP(settings.log_topic, p): start for p, start in starts.items()}
        # faust seeks to the committed offset next (aiokafka leaves the position alone when
        # it is 0, hence the seek as well).
        await app.consumer._commit(offsets)
        await app.consumer.seek_wait(offsets)
        if app.consumer_generation_id != generation:
            return  # revoked meanwhile: arming or seeding now would outlive this assignment
        for p, start in starts.items():
            processor.arm(p, start)
        for p in sorted(old_table - old_state):
            logger.warning(
                "log partition %d: the rules table is of a deleted incarnation of the log "
                "(topic id now %s): dropping its rules and re-reading the log from offset %d",
                p,
                processor.topic_id,
                starts[p],
            )
            processor.restart(p, state_usable=True)
        for p in sorted(old_state):
            logger.error(
                "log partition %d: state topic %r holds the rules of a deleted incarnation "
                "of the log (its last marker names another topic id than %s): re-reading "
                "the log from offset %d without writing offset markers there, so SDKs "
                "replay the log. Delete %r and restart the worker to rebuild it.",
                p,
                settings.state_topic,
                processor.topic_id,
                starts[p],
                settings.state_topic,
            )
            processor.restart(p, state_usable=False)
        for p, records in seeds.items():
            logger.info(
                "log partition %d: the rules table is in step with marker %s, the state "
                "topic's last is %s: seeding it with %d state records",
                p,
                processor.synced(p),
                resume[p].marker,
                len(records),
            )
            processor.seed(p, records)

    # Registered by call, not decorator: faust's decorators are untyped.
    app.agent(source, name="revocations")(revocations)
    app.timer(settings.tick_seconds)(send_ticks)
    app.timer(60.0)(log_counters)
    app.on_partitions_revoked.connect(on_revoked)
    if broker is None:  # the in-memory transport (offline tests) has no state topic to read
        app.on_rebalance_complete.connect(on_rebalance_complete)
    if settings.snapshot_signing_key is not None and broker is None:
        _snapshots(app, settings)

    return app


class _TrackedTable(faust.Table[bytes, bytes]):
    """A table that reports every changelog send with its partition."""

    on_changelog_send: Callable[[int, FutureMessage], None] | None = None

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: CodecArg | None = None,
        value_serializer: CodecArg | None = None,
    ) -> FutureMessage:
        fut = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        hook = self.on_changelog_send
        if hook is not None and fut.message.partition is not None:
            hook(fut.message.partition, fut)
        return fut


def _snapshots(app: Any, settings: StreamsSettings) -> None:
    """Run the snapshotter (:mod:`streams._snapshot`) in a thread of this worker; it writes
    the log partitions faust assigns to this worker."""
    snapshotter = Snapshotter(settings, owned=())

    def assigned() -> set[int]:
        return {tp.partition for tp in app.consumer.assignment() if tp.topic == settings.log_topic}

    async def start_snapshotter() -> None:
        snapshotter.start()

    async def on_assigned(sender: Any, assigned_tps: Any, **kwargs: Any) -> None:
        snapshotter.own(assigned())

    async def on_revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        snapshotter.own(assigned() - {tp.partition for tp in revoked})

    async def stop_snapshotter(sender: Any, **kwargs: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, snapshotter.close, 10.0)

    app.task(start_snapshotter)
    app.on_partitions_assigned.connect(on_assigned)
    app.on_partitions_revoked.connect(on_revoked)
    app.on_before_shutdown.connect(stop_snapshotter)


@cache
def _default_app() -> Any:
    try:
        # Resolves the replication factor once (logged) for every topic the worker makes.
        settings, partitions = prepare_topics(StreamsSettings.from_env())
        topic_id = log_incarnation(settings, ())[0]
        if topic_id is None:
            logger.warning(
                "the cluster gives no topic id for log topic %r (Kafka before 2.8): offset "
                "markers cannot name its incarnation, and SDKs do not trust markers without "
                "one when they know the log's (no_topic_id)",
                settings.log_topic,
            )
        return create_app(settings, partitions=partitions, topic_id=topic_id)
    except RevocastError as exc:
        # A bad setting or an unreachable cluster: faust's CLI would print a traceback.
        raise SystemExit(f"revocast streams: {exc}") from None


def __getattr__(name: str) -> Any:
    # faust -A streams.app looks up ``app`` here; building it needs the environment and Kafka.
    if name == "app":
        return _default_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
