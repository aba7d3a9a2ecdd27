"""The publisher embedded by the identity service."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Self, TypedDict

from producer._errors import InvalidRevocationError, PublishError
from producer._events import (
    Clock,
    build,
    check_event,
    check_watermark,
    require_id,
    to_datetime,
    utc_now,
)
from producer._kafka import Ack, KafkaSender
from producer._lease import DrainLease
from producer._outbox import Outbox, OutboxRow
from producer._settings import PublisherSettings
from revocation_events import (
    BaseEvent,
    EventCodec,
    EventSigner,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)

__all__ = ["PublishResult", "Publisher"]

log = logging.getLogger("producer")

_DRAIN_BATCH = 500
_POLL = 0.05
"""How often the drainer looks at the outbox file for other processes' rows, acks and lease
(a cheap read: SQLite's ``data_version`` and the lease row)."""
_MAX_BACKOFF = 5.0


@dataclass(frozen=True, slots=True)
class PublishResult:
    """Where an event went: ``partition``/``offset`` once acked, or ``queued=True`` when it is
    safe in the outbox and will be delivered when Kafka is reachable."""

    event_id: uuid.UUID
    topic: str
    partition: int | None = None
    offset: int | None = None
    queued: bool = False


class _Common(TypedDict):
    issuer: str
    occurred_at: datetime
    reason: str


class _Waiter:
    __slots__ = ("ack", "done")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ack: Ack | None = None


class Publisher:
    """Publishes signed revocation events; thread-safe; use as a context manager.

    Every method returns once the broker acknowledged the event (``acks=all``, idempotent
    producer). In ``delivery="outbox"`` mode the event is first committed to the SQLite outbox;
    if the ack does not arrive within ``ack_timeout`` the call returns ``queued=True`` and the
    background drainer (thread ``revocast-outbox-drainer``) keeps delivering, in publish order,
    until it does, also across restarts of the process.

    Delivery is at-least-once per event id: a crash between the broker's ack and the outbox
    delete re-sends the event after restart. Consumers apply events idempotently (dedupe by
    ``id``), so the duplicate has no effect.

    Processes may share one outbox file: only the holder of its drain lease sends, the others'
    rows included (it polls the file for them), and each call still returns its own event's
    ack. See :mod:`producer._lease` for takeover when the holder dies or stalls.

    Bad arguments raise :class:`InvalidRevocationError` before anything is written or sent.
    """

    def __init__(self, settings: PublisherSettings, *, clock: Clock = utc_now) -> None:
        self._settings = settings
        self._clock = clock
        self._pid = os.getpid()
        key = settings.signing_key
        self._codec = EventCodec(signer=EventSigner(key) if key is not None else None)
        self._sender = KafkaSender(settings)
        self._lock = threading.Lock()
        self._closed = False
        self._outbox: Outbox | None = None
        self._lease: DrainLease | None = None
        self._drainer: threading.Thread | None = None
        self._waiters: dict[uuid.UUID, _Waiter] = {}
        self._wakeup = threading.Event()
        self._stop = threading.Event()
        if settings.delivery == "outbox":
            self._outbox = Outbox(settings.outbox_path)
            self._lease = DrainLease(self._outbox, duration=settings.outbox_lease)
            self._wakeup.set()  # resume what a previous process left behind
            self._drainer = threading.Thread(
                target=self._drain_loop, name="revocast-outbox-drainer", daemon=True
            )
            self._drainer.start()

    @property
    def settings(self) -> PublisherSettings:
        return self._settings

    # -- actions -----------------------------------------------------------

    def revoke_token(
        self,
        jti: str,
        *,
        expires_at: datetime | int | float,
        sub: str | None = None,
        reason: str = "",
    ) -> PublishResult:
        """Revoke one token until its own ``exp`` (a datetime or the JWT's epoch seconds)."""
        fields = self._common(reason)
        event = build(
            TokenRevoked,
            jti=require_id("jti", jti),
            sub=_optional_id("sub", sub),
            expires_at=to_datetime("expires_at", expires_at),
            **fields,
        )
        return self.publish(event)

    def revoke_session(
        self, sid: str, *, sub: str | None = None, reason: str = ""
    ) -> PublishResult:
        """Revoke every token of session ``sid``."""
        fields = self._common(reason)
        event = build(
            SessionRevoked,
            sid=require_id("sid", sid),
            sub=_optional_id("sub", sub),
            expires_at=fields["occurred_at"] + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def revoke_subject(
        self,
        sub: str,
        *,
        issued_before: datetime | int | float | None = None,
        reason: str = "",
    ) -> PublishResult:
        """Log ``sub`` out everywhere: tokens issued before ``issued_before`` (default: now)."""
        fields = self._common(reason)
        watermark = _watermark(issued_before, fields["occurred_at"])
        event = build(
            SubjectTokensRevoked,
            sub=require_id("sub", sub),
            issued_before=watermark,
            expires_at=watermark + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def block_subject(self, sub: str, *, reason: str = "") -> PublishResult:
        """Refuse every token of ``sub`` until :meth:`unblock_subject`."""
        fields = self._common(reason)
        return self.publish(build(SubjectBlocked, sub=require_id("sub", sub), **fields))

    def unblock_subject(self, sub: str, *, reason: str = "") -> PublishResult:
        """Lift a block of ``sub``."""
        fields = self._common(reason)
        event = build(
            SubjectUnblocked,
            sub=require_id("sub", sub),
            expires_at=fields["occurred_at"] + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def delete_subject(self, sub: str, *, reason: str = "") -> PublishResult:
        """The account is deleted: refuse every token of ``sub`` it was issued."""
        fields = self._common(reason)
        event = build(
            SubjectDeleted,
            sub=require_id("sub", sub),
            expires_at=fields["occurred_at"] + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def bump_subject_version(
        self, sub: str, *, min_version: int, reason: str = ""
    ) -> PublishResult:
        """Refuse tokens of ``sub`` whose version claim is below ``min_version``."""
        fields = self._common(reason)
        if isinstance(min_version, bool) or not isinstance(min_version, int):
            raise InvalidRevocationError(f"min_version must be an integer, got {min_version!r}")
        event = build(
            SubjectVersionBumped,
            sub=require_id("sub", sub),
            min_version=min_version,
            expires_at=fields["occurred_at"] + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def revoke_key(self, kid: str, *, reason: str = "") -> PublishResult:
        """Signing key ``kid`` is compromised: refuse every token it signed, forever."""
        fields = self._common(reason)
        return self.publish(build(KeyRevoked, kid=require_id("kid", kid), **fields))

    def revoke_all(
        self, *, issued_before: datetime | int | float | None = None, reason: str = ""
    ) -> PublishResult:
        """Emergency: revoke every token issued before ``issued_before`` (default: now)."""
        fields = self._common(reason)
        watermark = _watermark(issued_before, fields["occurred_at"])
        event = build(
            GlobalTokensRevoked,
            issued_before=watermark,
            expires_at=watermark + self._settings.token_lifetime,
            **fields,
        )
        return self.publish(event)

    def publish(self, event: BaseEvent) -> PublishResult:
        """Publish a ready-made event (signed with the configured key)."""
        return self.publish_many([event])[0]

    def publish_many(self, events: Iterable[BaseEvent]) -> list[PublishResult]:
        """Publish several events in order, waiting once for all their acks."""
        # A single event is iterable too (pydantic yields its fields): name the mistake.
        if isinstance(events, BaseEvent) or not isinstance(events, Iterable):
            raise InvalidRevocationError(
                f"publish_many takes an iterable of events, got {type(events).__name__}"
                + ("; use publish() for one" if isinstance(events, BaseEvent) else "")
            )
        batch = list(events)
        now = self._now()
        ids: set[uuid.UUID] = set()
        for event in batch:
            if not isinstance(event, BaseEvent):
                raise InvalidRevocationError(f"not a revocation event: {type(event).__name__}")
            check_event(event, now)
            if event.id in ids:  # each result answers one event, found by its id
                raise InvalidRevocationError(f"event {event.id} appears twice in the batch")
            ids.add(event.id)
        if not batch:
            return []
        if self._closed:
            raise PublishError("publisher is closed")
        if os.getpid() != self._pid:
            # A forked child has no drainer thread, a copy of the parent's SQLite connection
            # (using it can corrupt the outbox file) and possibly a lock some parent thread held.
            raise PublishError(
                f"publisher created in process {self._pid} before a fork: create one in each "
                "process after forking (gunicorn: do not --preload it)"
            )
        if self._outbox is None:
            return self._publish_direct(batch)
        return self._publish_outbox(self._outbox, batch)

    def pending_count(self) -> int:
        """Events in the outbox not yet acknowledged by Kafka (0 in direct mode)."""
        if self._closed:
            raise PublishError("publisher is closed (the outbox file keeps what is pending)")
        return self._outbox.count() if self._outbox is not None else 0

    def wait_until_drained(self, timeout: float) -> bool:
        """Wait until the outbox is empty; ``False`` if it is not within ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while self.pending_count() > 0:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._wakeup.set()
            self._stop.wait(min(0.05, remaining))
        return True

    # -- lifecycle -----------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop the drainer and the producer. Undelivered events stay in the outbox for the next
        publisher on the same path. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            waiters = list(self._waiters.values())
            self._waiters.clear()
        for waiter in waiters:  # their callers return queued=True at once
            waiter.done.set()
        s = self._settings
        bound = s.max_block + s.delivery_timeout + 1.0 if timeout is None else timeout
        self._stop.set()
        self._wakeup.set()
        if self._drainer is not None:
            self._drainer.join(bound)
        self._sender.close(timeout=0 if timeout is None else timeout)
        if self._outbox is not None and not (self._drainer and self._drainer.is_alive()):
            if self._lease is not None:
                try:
                    self._lease.release()
                except sqlite3.Error as exc:  # it expires on its own
                    log.warning("cannot release the outbox drain lease: %s", exc)
            self._outbox.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- internals -----------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if not isinstance(now, datetime):  # clock=time.time is an easy mistake
            raise InvalidRevocationError(
                f"the publisher's clock must return a datetime, got {type(now).__name__}"
            )
        if now.tzinfo is None:
            raise InvalidRevocationError("the publisher's clock returned a naive datetime")
        return now

    def _common(self, reason: str) -> _Common:
        if not isinstance(reason, str):
            raise InvalidRevocationError(f"reason must be a string, got {type(reason).__name__}")
        return {"issuer": self._settings.issuer, "occurred_at": self._now(), "reason": reason}

    def _publish_direct(self, batch: Sequence[BaseEvent]) -> list[PublishResult]:
        s = self._settings
        records = [self._codec.encode(e) for e in batch]
        futures = self._sender.send(records)
        outcomes = self._sender.wait(futures, s.delivery_timeout + s.max_block)
        results: list[PublishResult] = []
        for event, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, PublishError):
                self._sender.reset()
                raise outcome
            results.append(self._acked(event.id, outcome))
        return results

    def _publish_outbox(self, outbox: Outbox, batch: Sequence[BaseEvent]) -> list[PublishResult]:
        records = [(e.id, self._codec.encode(e)) for e in batch]
        waiters = {event_id: _Waiter() for event_id, _ in records}
        with self._lock:
            # Registered before the rows exist, so an ack cannot arrive before its waiter.
            self._waiters.update(waiters)
        try:
            outbox.append(records)
        except BaseException:
            with self._lock:
                for event_id in waiters:
                    self._waiters.pop(event_id, None)
            raise
        self._wakeup.set()
        deadline = time.monotonic() + self._settings.ack_timeout
        for waiter in waiters.values():
            if not waiter.done.wait(max(0.0, deadline - time.monotonic())):
                break
        with self._lock:
            for event_id in waiters:
                self._waiters.pop(event_id, None)
        return [
            self._acked(event_id, w.ack)
            if w.ack is not None
            else PublishResult(event_id=event_id, topic=self._sender.topic, queued=True)
            for event_id, w in waiters.items()
        ]

    def _acked(self, event_id: uuid.UUID, ack: Ack) -> PublishResult:
        return PublishResult(
            event_id=event_id, topic=self._sender.topic, partition=ack.partition, offset=ack.offset
        )

    def _drain_loop(self) -> None:
        assert self._outbox is not None
        assert self._lease is not None
        outbox, lease = self._outbox, self._lease
        backoff = 0.1
        # A holder retrying a Kafka outage keeps its lease: it loops at least thrice a lease.
        max_backoff = min(_MAX_BACKOFF, self._settings.outbox_lease / 3)
        seen: int | None = None
        while not self._stop.is_set():
            woken = self._wakeup.wait(_POLL)
            self._wakeup.clear()
            if self._stop.is_set():
                return
            try:
                # Other processes' commits wake nobody here: data_version is how they show.
                version = outbox.data_version()
                changed, seen = version != seen, version
                if changed:
                    self._collect_acks(outbox)
                was_held = lease.held
                if not lease.hold():
                    continue
                if was_held and not (woken or changed):
                    continue
                delivered_all = self._drain_once()
            except PublishError as exc:
                log.warning("outbox delivery failed, retrying in %.1fs: %s", backoff, exc)
                delivered_all = False
            except Exception:  # the drainer must survive anything; the rows stay on disk
                log.exception("outbox drainer error, retrying in %.1fs", backoff)
                delivered_all = False
            if delivered_all:
                backoff = 0.1
                continue
            self._sender.reset()
            self._stop.wait(backoff)
            backoff = min(backoff * 2, max_backoff)
            self._wakeup.set()

    def _drain_once(self) -> bool:
        """Send the oldest pending rows; delete the acknowledged prefix. True if all went.

        Only called right after the drain lease was checked."""
        assert self._outbox is not None
        rows = self._outbox.head(_DRAIN_BATCH)
        if not rows:
            return True
        s = self._settings
        futures = self._sender.send([row.record for row in rows])
        # Renewed while the batch is in flight: a slow broker is not a dead holder.
        outcomes = self._sender.wait(
            futures,
            s.delivery_timeout + s.max_block,
            heartbeat=self._renew,
            every=min(1.0, s.outbox_lease / 6),
        )
        acked: list[tuple[OutboxRow, Ack]] = []
        for row, outcome in zip(rows, outcomes, strict=True):
            if isinstance(outcome, PublishError):
                # Keep this row and every later one: re-sending them in order keeps each
                # subject's last event last, even if some later ones already arrived.
                log.warning("outbox event %s not acknowledged: %s", row.event_id, outcome)
                break
            acked.append((row, outcome))
        with self._lock:
            # Rows nobody here waits for: another process (or a caller that gave up) may.
            others = [
                (row.event_id, ack.partition, ack.offset)
                for row, ack in acked
                if row.event_id not in self._waiters
            ]
        self._outbox.delete((row.seq for row, _ in acked), others, now=time.time())
        self._resolve({row.event_id: ack for row, ack in acked})
        if len(acked) < len(rows):
            return False
        if len(rows) == _DRAIN_BATCH:
            self._wakeup.set()
        return True

    def _renew(self) -> None:
        assert self._lease is not None
        try:
            self._lease.hold()
        except sqlite3.Error as exc:  # the batch in flight must still be waited for
            log.warning("cannot renew the outbox drain lease: %s", exc)

    def _collect_acks(self, outbox: Outbox) -> None:
        """Resolve waiters whose rows another process's drainer delivered."""
        with self._lock:
            waiting = list(self._waiters)
        if waiting:
            found = outbox.take_acks(waiting)
            self._resolve({e: Ack(partition=p, offset=o) for e, (p, o) in found.items()})

    def _resolve(self, acks: dict[uuid.UUID, Ack]) -> None:
        with self._lock:
            for event_id, ack in acks.items():
                waiter = self._waiters.pop(event_id, None)
                if waiter is not None:
                    waiter.ack = ack
                    waiter.done.set()


def _optional_id(name: str, value: str | None) -> str | None:
    return None if value is None else require_id(name, value)


def _watermark(value: datetime | int | float | None, now: datetime) -> datetime:
    at = now if value is None else to_datetime("issued_before", value)
    # Checked before the expiry is computed from it: near datetime.max that would overflow.
    check_watermark(at, now)
    return at
