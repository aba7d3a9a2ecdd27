"""The SDK entry point: :class:`Revocast` wires the source, the sink, the store and the verifier.

Fork safety (gunicorn ``--preload``): threads do not survive ``os.fork()``. A hook registered
with :func:`os.register_at_fork` marks every live instance in the child: its inherited state
keeps serving as if the source were INTERRUPTED (so ``max_staleness`` bounds how long), and the
first ``verify()`` or ``wait_until_ready()`` in the child starts a fresh source there (for
Kafka: a new consumer resuming from the parent's positions) and the JWKS thread, if any.
Nothing is started inside the fork hook itself, where locks of other threads may be held.
"""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from types import TracebackType
from typing import Any, NamedTuple

from consumer_sdk._errors import RevokedBy, StateUnavailableError, TokenRevokedError
from consumer_sdk._heartbeat import Heartbeat
from consumer_sdk._listeners import Listeners
from consumer_sdk._metrics import Metrics
from consumer_sdk._replay import RecordLike
from consumer_sdk._settings import ConsumerSettings, FailurePolicy
from consumer_sdk._snapshot import Chunk, restore
from consumer_sdk._source import DataSource, Headers
from consumer_sdk._state import RevocationState
from consumer_sdk._status import DataSourceState, SourceErrorKind, SourceStatus, StatusProvider
from consumer_sdk._verify import TokenVerifier, token_bytes
from revocation_events import Event, EventCodec, EventVerifier, MalformedEventError

__all__ = ["Revocast", "build_codec"]

_log = logging.getLogger("consumer_sdk")
_LOG_EVERY = 10.0
_VALID = DataSourceState.VALID
_DETAIL_CLAIM = {
    RevokedBy.JTI: "jti",
    RevokedBy.SID: "sid",
    RevokedBy.SUBJECT_WATERMARK: "sub",
    RevokedBy.BLOCKED: "sub",
    RevokedBy.DELETED: "sub",
    RevokedBy.VERSION: "sub",
}


def build_codec(settings: ConsumerSettings) -> EventCodec:
    """The codec that authenticates records as ``settings`` require."""
    verifier = EventVerifier(settings.event_keys) if settings.event_keys else None
    return EventCodec(verifier=verifier, require_signature=not settings.allow_unsigned_events)


class _RateLimitedLog:
    """At most one warning per key every ``_LOG_EVERY`` seconds of ``monotonic``: a wall
    clock stepped back would silence a key (such as fail-open) for as long as the step."""

    def __init__(self, monotonic: Callable[[], float]) -> None:
        self._monotonic = monotonic
        self._last: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()

    def warning(
        self, key: str, msg: str, *args: object, exc_info: BaseException | None = None
    ) -> None:
        now = self._monotonic()
        last = self._last.get(key)
        if last is not None and now - last < _LOG_EVERY:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        extra = self._suppressed.pop(key, 0)
        _log.warning(
            msg + (f" ({extra} similar suppressed)" if extra else ""), *args, exc_info=exc_info
        )


class _Record(NamedTuple):
    value: bytes | None
    headers: Headers


class _Sink:
    """The update sink: decodes records, applies events, counts, notifies."""

    def __init__(self, rc: Revocast) -> None:
        self._rc = rc
        self._state = rc.state
        self._codec = build_codec(rc.settings)
        self._clock = rc.clock
        self._monotonic = rc._monotonic
        self._metrics = rc.metrics
        self._expire_interval = rc.settings.expire_interval
        self._next_expire: float | None = None  # monotonic: a wall step back must not pause it
        self.applied: Counter[str] = Counter()
        self.unchanged: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.last_event_at: float | None = None
        self._bootstrapped = False
        self._log = _RateLimitedLog(rc._monotonic)

    def record(
        self, value: bytes | None, headers: Headers, *, timestamp_ms: int | None = None
    ) -> None:
        self.records((_Record(value, headers),))

    def records(self, records: Iterable[RecordLike]) -> None:
        """Raw records, in order: decode, authenticate and apply each, or count and log why
        it was skipped. Per-record lookups are hoisted out of the loop (log replay runs it
        per event)."""
        decode = self._codec.decode
        apply = self._state.apply
        clock = self._clock
        applied, unchanged = self.applied, self.unchanged
        metrics = self._metrics if self._metrics.enabled else None
        delay = metrics.delay if metrics is not None and self._bootstrapped else None  # event()
        # A Prometheus counter takes a lock per increment: add the batch's counts once, at the end.
        before = dict(applied)
        notify = self._rc.revocation_listeners.notify
        decoded = False
        try:
            for rec in records:
                try:
                    event = decode(rec.value, rec.headers)
                except MalformedEventError as exc:
                    self._skip(exc)
                    continue
                except MemoryError:
                    # Says nothing about the record: the source retries it (INTERRUPTED)
                    # rather than skipping a revocation for good.
                    raise
                except Exception as exc:
                    self._undecodable(exc)
                    continue
                changed = apply(event)
                decoded = True
                if not changed:
                    unchanged[event.type] += 1
                    continue
                applied[event.type] += 1
                if delay is not None:
                    delay(clock() - event.occurred_at.timestamp())
                notify(event)
        finally:
            if decoded:  # once per batch, not per event: a batch takes milliseconds
                self.last_event_at = clock()
            if metrics is not None:
                for event_type, n in applied.items():
                    if n != before.get(event_type, 0):
                        metrics.applied(event_type, n - before.get(event_type, 0))

    def _undecodable(self, exc: Exception) -> None:
        """The codec failed on a record other than by refusing it (a bug its tests missed,
        met on hostile bytes). Decoding is a function of the record alone, so a retry would
        fail the same way and stall its partition forever: skip it as ``invalid``, and log the
        traceback."""
        self._skip(MalformedEventError("invalid", f"decoding raised {exc!r:.200}"), cause=exc)

    def _skip(self, exc: MalformedEventError, cause: BaseException | None = None) -> None:
        self.skipped[exc.reason] += 1
        self._metrics.skipped(exc.reason)
        self._log.warning(
            exc.reason, "skipped a revocation record (%s): %s", exc.reason, exc, exc_info=cause
        )

    def event(self, event: Event) -> None:
        changed = self._state.apply(event)
        now = self._clock()
        self.last_event_at = now
        if not changed:
            self.unchanged[event.type] += 1
            return
        self.applied[event.type] += 1
        if self._metrics.enabled:
            self._metrics.applied(event.type)
            if self._bootstrapped:  # propagation delay of live events only
                self._metrics.delay(now - event.occurred_at.timestamp())
        self._rc.revocation_listeners.notify(event)

    def restore(self, chunks: list[Chunk]) -> dict[str, int]:
        return restore(self._state, chunks)

    def status(
        self,
        state: DataSourceState,
        error: str | None = None,
        *,
        kind: SourceErrorKind | None = None,
        since: float | None = None,
    ) -> None:
        self._bootstrapped = self._bootstrapped or state is _VALID
        self._rc.status_provider.update(state, error, kind=kind, since=since)
        self._metrics.status(self._rc.status_provider.current.state.value)

    def tick(self) -> None:
        now = self._monotonic()
        if self._next_expire is None or now >= self._next_expire:
            self._next_expire = now + self._expire_interval
            self._state.expire()
            self._metrics.sizes(self._state.size_by_kind())
            if self.last_event_at is not None:
                self._metrics.last_event(self.last_event_at)


class Revocast:
    """Verifies tokens locally against PyJWT and the replicated revocation state.

    ``source=None`` reads the Kafka topic named in ``settings``; pass
    :class:`consumer_sdk.testing.InMemorySource` to drive it without Kafka. The source starts
    at once, in its own daemon thread; use :meth:`wait_until_ready` before serving.
    """

    def __init__(
        self,
        settings: ConsumerSettings,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        source: DataSource | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self._monotonic = monotonic
        self._verifier = TokenVerifier(settings, clock=clock)
        self._cache = self._verifier.cache  # None unless settings.verify_cache_size
        self._only_kid = self._verifier.only_kid
        self.state = RevocationState(
            clock=clock,
            max_token_lifetime=settings.max_token_lifetime,
            version_claim=settings.version_claim,
            grace=settings.leeway,
        )
        self.metrics = Metrics(settings.service_name)
        self.status_provider = StatusProvider(clock, monotonic=monotonic)
        self.revocation_listeners: Listeners[Event] = Listeners("revocation")
        self._sink = _Sink(self)
        source_is_kafka = source is None
        if source is None:
            from consumer_sdk._kafka_source import KafkaSource

            source = KafkaSource(settings, clock=clock)
        self._source: DataSource = source
        # Heartbeats (for ``revocast status``) only when the SDK reads Kafka itself.
        self._heartbeat = (
            Heartbeat(settings, self, clock=clock)
            if source_is_kafka and settings.heartbeat_interval > 0
            else None
        )
        self._policy = settings.failure_policy
        self._max_staleness = settings.max_staleness
        if any(key.algorithm == "HS256" for key in settings.snapshot_keys):
            # A snapshot decides what a bootstrapping service enforces: with a shared secret,
            # any one service (or whoever compromises one) can sign snapshots all trust.
            _log.warning(
                "snapshot_keys include an HMAC key: every service that holds it can sign "
                "snapshots every other service trusts; give services the worker's ed25519 "
                "public key instead"
            )
        self._restart_lock = threading.Lock()
        self._forked = False
        self._log = _RateLimitedLog(monotonic)
        _instances.add(self)
        self._start()

    @classmethod
    def from_env(cls, prefix: str = "REVOCAST_") -> Revocast:
        return cls(ConsumerSettings.from_env(prefix))

    def _start(self) -> None:
        self._sink.status(DataSourceState.INITIALIZING)
        self._source.start(self._sink)
        if self._verifier.jwks is not None:
            self._verifier.jwks.start()
        if self._heartbeat is not None:
            self._heartbeat.start()

    # -- request path ----------------------------------------------------------------------

    def verify(self, token: str | bytes) -> dict[str, Any]:
        """Decode and validate ``token`` and check it against every revocation rule.

        Raises PyJWT's errors unchanged, :class:`TokenRevokedError`, or (fail-closed)
        :class:`StateUnavailableError`; all are :class:`jwt.InvalidTokenError`.

        With ``verify_cache_size`` set, a token verified before skips only the decoding
        (signature and static claims; see :class:`consumer_sdk._verify.VerifyCache`): its
        time claims, the status and the revocation state are checked below as for any token,
        and it is remembered only once it has passed all of them.
        """
        cache = self._cache
        generation = None
        if cache is None:
            claims, kid = self._verifier.decode(token)
        else:
            raw = token_bytes(token)
            found = cache.get(raw)
            if found is None:
                generation = cache.generation  # read before decoding: see VerifyCache
                claims, kid = self._verifier.decode(raw)
            else:
                claims, kid = found
        if self.status_provider.current.state is not _VALID:
            self._when_not_valid()
        hit = self.state.check(claims, kid)
        # One static key verifies tokens whatever kid they name: a holder of that key, once
        # it is revoked, must not get past by naming another kid, or none.
        if (
            hit is None
            and (only := self._only_kid) is not None
            and kid != only
            and (hit := self.state.key_revoked(only)) is not None
        ):
            kid = only  # the revoked key, for the error's detail
        if hit is not None:
            rule, revoked_at = hit
            claim = _DETAIL_CLAIM.get(rule)
            detail = f"{claim}={claims.get(claim)}" if claim else (f"kid={kid}" if kid else "")
            raise TokenRevokedError(rule, revoked_at, detail)
        if generation is not None and cache is not None:
            cache.put(raw, claims, kid, generation)
        return claims

    def _when_not_valid(self) -> None:
        if self._forked:
            self._restart_after_fork()
        status = self.status_provider.current
        if status.state is _VALID:
            return
        if self.status_provider.serving_stale(status, self._max_staleness):
            return
        # A closed client is OFF for good: its state is never updated again, so even the
        # fail-open policy (meant for an outage) must not accept on it.
        if self._policy is FailurePolicy.ACCEPT and status.state is not DataSourceState.OFF:
            self._log.warning(
                "fail-open",
                "revocation state %s: accepting tokens (failure_policy=accept)",
                status.state.value,
            )
            return
        raise StateUnavailableError(
            f"revocation state is {status.state.value}"
            + (
                f" since {self.status_provider.elapsed(status):.1f}s"
                if status.state is not _VALID
                else ""
            )
        )

    # -- status, listeners, stats ----------------------------------------------------------

    @property
    def status(self) -> SourceStatus:
        if self._forked:
            # A health check may be the first call in a forked worker: start its source too.
            self._restart_after_fork()
        return replace(self.status_provider.current, last_event_at=self._sink.last_event_at)

    def wait_until_ready(self, timeout: float) -> bool:
        """Block until the state has caught up with the topic (and JWKS keys are loaded).

        False once the timeout has passed, or at once when the client is (or gets) closed."""
        if self._forked:
            self._restart_after_fork()
        deadline = time.monotonic() + timeout
        if not self.status_provider.ready.wait(timeout) or self._closed():
            return False
        jwks = self._verifier.jwks
        ready = jwks is None or jwks.loaded.wait(max(0.0, deadline - time.monotonic()))
        ready = ready and not self._closed()
        if ready and self.settings.gc_freeze_when_ready:
            _freeze_gc_once()
        return ready

    def _closed(self) -> bool:
        return self.status_provider.current.state is DataSourceState.OFF

    def add_status_listener(self, fn: Callable[[SourceStatus], object]) -> Callable[[], None]:
        return self.status_provider.listeners.add(fn)

    def add_revocation_listener(self, fn: Callable[[Event], object]) -> Callable[[], None]:
        """``fn`` is called (on the sync thread) with each event that changed the state.

        Keep it short: no later revocation is applied while it runs. One that blocks is
        reported as a stall (INTERRUPTED, see :mod:`consumer_sdk._stall`), so past
        ``max_staleness`` the failure policy decides, by default refusing every token."""
        return self.revocation_listeners.add(fn)

    def stats(self) -> dict[str, Any]:
        sink = self._sink
        return {
            "status": self.status_provider.current.state.value,
            "applied": dict(sink.applied),
            "unchanged": dict(sink.unchanged),
            "skipped": dict(sink.skipped),
            "entries": self.state.size_by_kind(),
            **self._source.stats(),
        }

    # -- lifecycle -------------------------------------------------------------------------

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background threads (source, JWKS refresher, heartbeat), waiting up to
        ``timeout`` seconds for all of them together; status becomes OFF."""
        deadline = time.monotonic() + timeout

        def remaining() -> float:
            return max(0.0, deadline - time.monotonic())

        self._sink.status(DataSourceState.OFF)
        with self._restart_lock:
            # In a forked child not restarted yet: a later verify() or status must not start
            # a source for a closed client (and one being restarted now is closed below).
            self._forked = False
        if self._heartbeat is not None:
            # The last heartbeat (OFF: a clean close, not a dead instance) goes out while the
            # source closes, not after it: a source using the whole budget left it none.
            self._heartbeat.stop()
        self._source.close(remaining())
        if self._verifier.jwks is not None:
            self._verifier.jwks.close(remaining())
        if self._heartbeat is not None:
            self._heartbeat.close(remaining())
        _instances.discard(self)

    def __enter__(self) -> Revocast:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _after_fork_in_child(self) -> None:
        self._restart_lock = threading.Lock()
        self.status_provider.after_fork()
        self.status_provider.listeners.after_fork()
        self.revocation_listeners.after_fork()
        self._forked = self.status_provider.current.state is not DataSourceState.OFF

    def _restart_after_fork(self) -> None:
        with self._restart_lock:
            if not self._forked:
                return
            self._source = self._source.after_fork()
            self._source.start(self._sink)
            if self._verifier.jwks is not None:
                self._verifier.jwks.start()
            if self._heartbeat is not None:
                self._heartbeat = self._heartbeat.after_fork()
                self._heartbeat.start()
            self._forked = False


_instances: weakref.WeakSet[Revocast] = weakref.WeakSet()
_frozen_in: int | None = None  # the pid that called gc.freeze() (a forked child may again)
_freeze_lock = threading.Lock()


def _freeze_gc_once() -> None:
    """``gc.freeze()`` once per process (``gc_freeze_when_ready``). A full collection first,
    so no garbage is frozen with the live start-up objects."""
    global _frozen_in
    with _freeze_lock:
        if _frozen_in == os.getpid():
            return
        _frozen_in = os.getpid()
    gc.collect()
    gc.freeze()
    _log.info(
        "gc.freeze(): %d start-up objects excluded from garbage collection", gc.get_freeze_count()
    )


def _after_fork_in_child() -> None:
    for rc in list(_instances):
        rc._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
