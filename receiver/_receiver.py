"""The receiver core: verify, deduplicate, map, publish, remember. Transport-agnostic: the
push endpoint, the poller and the logout endpoint all call into one :class:`Receiver`."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Literal

import httpx

from receiver._dedupe import DedupeStore
from receiver._errors import DeliveryUnavailable, ReceiverError, SetRejected
from receiver._keys import KeySource
from receiver._mapping import SSF, Skipped, events_of, lifts_a_block, map_logout, map_set
from receiver._metrics import Metrics
from receiver._settings import ReceiverSettings
from receiver._sink import EventSink
from receiver._subjects import resolve_subject, subject_shape
from receiver._tokens import LogoutVerifier, SetVerifier
from revocation_events import BaseEvent

__all__ = ["Outcome", "Receipt", "Receiver", "StreamStatus"]

log = logging.getLogger("receiver")

Outcome = Literal["published", "duplicate", "ignored", "verification"]
_Done = tuple[Outcome, str, tuple[BaseEvent, ...]]
"""What processing a new token came to: its outcome, detail and the events published."""


@dataclass(frozen=True, slots=True)
class Receipt:
    """What became of one accepted token. ``event`` is what was published, if anything."""

    jti: str
    event_type: str
    outcome: Outcome
    event: BaseEvent | None = None
    """The first event published."""
    detail: str = ""
    events: tuple[BaseEvent, ...] = ()
    """Every event published, in order (more than one only where the SET is ambiguous)."""


@dataclass(frozen=True, slots=True)
class StreamStatus:
    """The receiver's view of its SSF stream.

    ``verified`` is true once a verification event arrived carrying the ``state`` of the last
    :meth:`Receiver.request_verification` (or any verification event if none was requested).
    ``transmitter_status`` is the status of the last ``stream-updated`` event.
    """

    stream_id: str | None = None
    verified: bool = False
    pending_state: str | None = None
    last_verification_state: str | None = None
    last_verification_at: datetime | None = None
    last_event_at: datetime | None = None
    transmitter_status: str | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Receiver:
    """Turns SETs and logout tokens into published Revocast events, each at most once.

    ``max_token_lifetime`` is the longest lifetime of the tokens the rules protect (the
    producer's ``PublisherSettings.max_token_lifetime``): every published rule expires that
    long after it is received. Pass ``http_client`` to control how keys and the transmitter
    are reached (tests use ``httpx.MockTransport``); the receiver closes only clients it made.
    """

    def __init__(
        self,
        *,
        settings: ReceiverSettings,
        sink: EventSink,
        max_token_lifetime: timedelta,
        http_client: httpx.Client | None = None,
        clock: Callable[[], datetime] = _utcnow,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_token_lifetime <= timedelta(0):
            raise ValueError("max_token_lifetime must be positive")
        self.settings = settings
        self.metrics = Metrics()
        self._sink = sink
        self._lifetime = max_token_lifetime
        self._clock = clock
        self._own_client = http_client is None
        self._http = http_client or httpx.Client(
            timeout=settings.http_timeout, follow_redirects=False
        )
        self._dedupe = DedupeStore(
            settings.dedupe_path, retention=settings.dedupe_retention, clock=clock
        )
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self._status = StreamStatus(
            stream_id=settings.transmitter.stream_id if settings.transmitter else None
        )
        self._set_keys: KeySource | None = None
        self._set_verifier: SetVerifier | None = None
        self._logout_keys: KeySource | None = None
        self._logout_verifier: LogoutVerifier | None = None

        def key_source(
            source: str, issuer: str, metadata_url: str, jwks_uri: str | None
        ) -> KeySource:
            def failed(reason: str) -> None:
                self.metrics.count_key_refresh_failure(source, reason)

            return KeySource(
                issuer=issuer,
                metadata_url=metadata_url,
                jwks_uri=jwks_uri,
                client=self._http,
                max_age=settings.jwks_max_age,
                min_refresh_interval=settings.jwks_min_refresh_interval,
                wait_timeout=settings.http_timeout,
                clock=monotonic,
                wall_clock=lambda: clock().timestamp(),
                on_refresh_failure=failed,
            )

        if (t := settings.transmitter) is not None:
            self._set_keys = key_source("set", t.issuer, t.metadata_url, t.jwks_uri)
            self._set_verifier = SetVerifier(
                settings=t,
                keys=self._set_keys,
                clock=clock,
                leeway=settings.leeway,
                max_bytes=settings.max_token_bytes,
                # A SET is accepted only while its jti is surely still in the dedupe store.
                max_age=settings.dedupe_retention - settings.leeway,
            )
        if (lo := settings.logout) is not None:
            self._logout_keys = key_source("logout", lo.issuer, lo.metadata_url, lo.jwks_uri)
            self._logout_verifier = LogoutVerifier(
                settings=lo,
                keys=self._logout_keys,
                clock=clock,
                leeway=settings.leeway,
                max_bytes=settings.max_token_bytes,
            )

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the keys now, so the first token does not wait; failures are only logged."""
        for keys in (self._set_keys, self._logout_keys):
            if keys is not None:
                try:
                    keys.refresh()
                except DeliveryUnavailable as exc:
                    log.warning("%s", exc)

    def close(self) -> None:
        if self._own_client:
            self._http.close()

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def accepts_sets(self) -> bool:
        return self._set_verifier is not None

    @property
    def accepts_logout(self) -> bool:
        return self._logout_verifier is not None

    # -- SETs ------------------------------------------------------------------------------

    def receive_set(self, token: str) -> Receipt:
        """Process one SET. Returns once any mapped event is published.

        Raises :class:`SetRejected` (never deliverable) or :class:`DeliveryUnavailable`
        (deliver again later); both are counted.
        """
        if self._set_verifier is None:
            raise SetRejected("access_denied", "this receiver has no SSF transmitter configured")
        try:
            verified = self._set_verifier.verify(token)
        except ReceiverError as exc:
            self._failed("unverified", exc)
            raise
        kind = verified.event_type
        assert self.settings.transmitter is not None
        try:
            subject = resolve_subject(
                verified.subject,
                email_is_subject=self.settings.mapping.email_is_subject,
                max_aliases=self.settings.max_aliases,
            )
            allowed = self.settings.transmitter.subject_issuers
            if allowed and not subject.issuers <= set(allowed):
                raise SetRejected("access_denied", "subject names an issuer this stream may not")
        except SetRejected as exc:
            self._failed(kind, exc)
            raise
        self._touch(last_event_at=self._clock())
        namespace = f"set:{verified.issuer}"
        if kind == f"{SSF}verification":
            # Deduplicated like any SET: a replay must not report a stream as verified.
            state = verified.payload.get("state")
            return self._once(namespace, verified.jti, kind, lambda: self._verification(state))
        now = self._clock()
        mapped = map_set(
            verified,
            subject,
            policy=self.settings.mapping,
            issuer=self.settings.event_issuer,
            now=now,
            max_token_lifetime=self._lifetime,
        )
        if allowed and subject.unscoped and lifts_a_block(events_of(mapped)):
            # An opaque or e-mail subject names no issuer, so it cannot be held to
            # SUBJECT_ISSUERS. Revoking such a subject at worst revokes too much; lifting a
            # block could free another issuer's account that shares the sub.
            why = "an unblock must name its subject's iss when SUBJECT_ISSUERS is set"
            refusal = SetRejected("access_denied", why)
            self._failed(kind, refusal)
            raise refusal
        if kind == f"{SSF}stream-updated":
            status = verified.payload.get("status")
            shown = str(status)[:32] if status is not None else None

            def stream_updated() -> _Done:
                # Only a first delivery: a replayed older SET must not undo a later status.
                self._touch(transmitter_status=shown)
                return self._publish(verified.jti, kind, mapped)

            return self._once(namespace, verified.jti, kind, stream_updated)
        if isinstance(mapped, Skipped) and mapped.why == "no_usable_subject":
            shape = subject_shape(verified.subject)

            def unnameable() -> _Done:
                # Acknowledged (redelivery could not help), but the transmitter now believes
                # something was revoked: say so once, with the subject's shape, not its values.
                log.warning(
                    "SET %r (%s) names no user, session or token a rule can name (%s): "
                    "acknowledged, nothing published",
                    verified.jti,
                    kind[:128],
                    shape,
                )
                return self._publish(verified.jti, kind, mapped)

            return self._once(namespace, verified.jti, kind, unnameable)
        return self._deliver(namespace, verified.jti, kind, mapped)

    def _verification(self, state: object) -> _Done:
        state_text = state[:256] if isinstance(state, str) else None
        with self._lock:
            pending = self._status.pending_state
            matches = pending is None or state_text == pending
            self._status = replace(
                self._status,
                verified=self._status.verified or matches,
                pending_state=None if matches else pending,
                last_verification_state=state_text,
                last_verification_at=self._clock(),
            )
        return "verification", state_text or "", ()

    # -- back-channel logout -----------------------------------------------------------------

    def receive_logout(self, token: str) -> Receipt:
        """Process one back-channel logout token; raises like :meth:`receive_set`."""
        kind = "oidc:backchannel-logout"
        if self._logout_verifier is None:
            raise SetRejected("access_denied", "back-channel logout is not configured")
        try:
            verified = self._logout_verifier.verify(token)
        except ReceiverError as exc:
            # Counted only: anyone can post a logout token, and its failure must not replace
            # the stream's last error shown in the status.
            self._failed(kind, exc, stream=False)
            raise
        event = map_logout(
            verified,
            issuer=self.settings.event_issuer,
            now=self._clock(),
            max_token_lifetime=self._lifetime,
        )
        return self._deliver(f"logout:{verified.issuer}", verified.jti, kind, event)

    # -- delivery ----------------------------------------------------------------------------

    def _deliver(
        self,
        namespace: str,
        jti: str,
        kind: str,
        mapped: BaseEvent | tuple[BaseEvent, ...] | Skipped,
    ) -> Receipt:
        return self._once(namespace, jti, kind, lambda: self._publish(jti, kind, mapped))

    def _once(
        self,
        namespace: str,
        jti: str,
        kind: str,
        act: Callable[[], _Done],
    ) -> Receipt:
        """Run ``act`` (publish, update the status) for the first delivery of ``jti`` only,
        then remember it; a redelivery is counted as a ``duplicate`` and changes nothing."""
        key = (namespace, jti)
        with self._lock:
            if key in self._in_flight:
                # The same token is being processed right now; its outcome is not known yet.
                self.metrics.count(kind, "unavailable")
                raise DeliveryUnavailable(f"token {jti!r} is already being processed")
            self._in_flight.add(key)
        try:
            if self._dedupe.seen(namespace, jti):
                self.metrics.count(kind, "duplicate")
                return Receipt(jti, kind, "duplicate")
            outcome, detail, events = act()
            self._dedupe.record(namespace, jti)
            label = f"ignored:{detail}" if outcome == "ignored" else outcome
            self.metrics.count(kind, label)
            first = events[0] if events else None
            return Receipt(jti, kind, outcome, event=first, detail=detail, events=events)
        finally:
            with self._lock:
                self._in_flight.discard(key)

    def _publish(
        self, jti: str, kind: str, mapped: BaseEvent | tuple[BaseEvent, ...] | Skipped
    ) -> _Done:
        if isinstance(mapped, Skipped):
            return "ignored", mapped.why, ()
        events = events_of(mapped)
        for event in events:
            # After a failure part-way, the redelivery publishes every event again: a
            # duplicate rule is harmless, a missing one is not.
            try:
                result = self._sink.publish(event)
            except Exception as exc:  # any sink failure means "not delivered, retry later"
                failure = DeliveryUnavailable(f"publish failed: {type(exc).__name__}")
                self._failed(kind, failure)
                raise DeliveryUnavailable(f"publish failed: {exc}") from exc
            if getattr(result, "queued", False):
                log.info("event %s for %s queued in the outbox (durable)", event.id, jti)
        return "published", "", events

    def _failed(self, kind: str, exc: ReceiverError, *, stream: bool = True) -> None:
        outcome = f"rejected:{exc.code}" if isinstance(exc, SetRejected) else "unavailable"
        self.metrics.count(kind, outcome)
        if stream:
            self._touch(last_error=str(exc)[:256], last_error_at=self._clock())
        else:
            log.info("%s refused: %s", kind, str(exc)[:256])

    # -- stream status -----------------------------------------------------------------------

    def status(self) -> StreamStatus:
        with self._lock:
            return self._status

    def _touch(self, **changes: object) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)  # type: ignore[arg-type]

    def request_verification(self) -> str:
        """Ask the transmitter for a verification event (SSF 1.0 section 8.1.4.2).

        Returns the random ``state`` sent; :meth:`status` reports ``verified`` once the event
        carrying it arrives. Raises :class:`DeliveryUnavailable` if the request fails.
        """
        t = self.settings.transmitter
        if t is None or self._set_keys is None:
            raise ReceiverError("no SSF transmitter configured")
        if not self._set_keys.metadata:
            self._set_keys.refresh()
        endpoint = self._set_keys.metadata.get("verification_endpoint")
        if not isinstance(endpoint, str):
            raise ReceiverError("the transmitter advertises no verification_endpoint")
        if t.metadata_url.lower().startswith("https://") and not endpoint.lower().startswith(
            "https://"
        ):
            # Our bearer token would cross the network in clear text.
            raise ReceiverError("the transmitter's verification_endpoint is not https")
        state = secrets.token_urlsafe(16)
        body: dict[str, str] = {"state": state}
        if t.stream_id is not None:
            body["stream_id"] = t.stream_id
        headers = {}
        if t.receiver_token is not None:
            headers["Authorization"] = f"Bearer {t.receiver_token}"
        with self._lock:
            self._status = replace(self._status, pending_state=state, verified=False)
        try:
            response = self._http.post(endpoint, json=body, headers=headers)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DeliveryUnavailable(f"verification request failed: {type(exc).__name__}") from exc
        return state
