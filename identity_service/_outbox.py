"""Publishing the revocations the store owes: after each commit, at startup, and on a timer.

Every state change commits its :class:`~identity_service._revocations.Revocation` with it (see
:class:`~identity_service._store.Store`); the request then publishes that row and deletes it
once the publisher returns. A row outlives its request when the process dies in between
(SIGKILL, OOM kill, deploy) or the publisher raises. :meth:`RevocationOutbox.publish_all` sends
those again in commit order: ``create_app`` runs it before it returns, so before anything is
served, and the retry thread (``identity-revocation-retry``) every ``interval`` seconds while
the app is served.

Once :class:`producer.Publisher` returns, even ``queued=True``, the event is in its own durable
outbox, so the row can go. A row may be sent twice (a crash after the publisher returned and
before the delete, or the retry thread meeting a row whose request is still publishing): see
:class:`~identity_service._revocations.Revocation` for why that has no further effect.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import Protocol

from identity_service._revocations import Pending, Revocation
from identity_service._store import Store

__all__ = ["RevocationOutbox", "RevocationPublisher"]

_log = logging.getLogger("identity_service")


class RevocationPublisher(Protocol):
    """The part of :class:`producer.Publisher` the identity service uses."""

    def revoke_session(self, sid: str, *, sub: str | None = ..., reason: str = ...) -> object: ...
    def revoke_subject(
        self, sub: str, *, issued_before: datetime | None = ..., reason: str = ...
    ) -> object: ...
    def block_subject(self, sub: str, *, reason: str = ...) -> object: ...
    def unblock_subject(self, sub: str, *, reason: str = ...) -> object: ...
    def delete_subject(self, sub: str, *, reason: str = ...) -> object: ...
    def bump_subject_version(self, sub: str, *, min_version: int, reason: str = ...) -> object: ...
    def revoke_key(self, kid: str, *, reason: str = ...) -> object: ...


class RevocationOutbox:
    """Sends the store's pending revocations through ``publisher``; thread-safe."""

    def __init__(self, store: Store, publisher: RevocationPublisher, *, interval: float) -> None:
        self._store = store
        self._publisher = publisher
        self._interval = interval
        self._lock = threading.Lock()
        self._in_flight: set[int] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def publish(self, pending: Pending) -> None:
        """Publish one committed revocation and delete its row. The publisher's exception
        propagates and the row stays for :meth:`publish_all`."""
        with self._lock:
            self._in_flight.add(pending.seq)
        try:
            self._send(pending.revocation)
            self._store.published(pending.seq)
        finally:
            with self._lock:
                self._in_flight.discard(pending.seq)

    def publish_all(self) -> int:
        """Publish every pending row, oldest first, except those a request is publishing now;
        returns how many failed (logged, kept for the next call). A failure does not hold the
        later rows back: no revocation's effect depends on the order of two rows."""
        failed = 0
        for pending in self._store.pending():
            with self._lock:
                if pending.seq in self._in_flight:
                    continue
            try:
                self.publish(pending)
            except Exception:
                failed += 1
                _log.warning(
                    "publishing pending revocation %d (%s %r) failed; retried later",
                    pending.seq,
                    pending.revocation.kind,
                    pending.revocation.target,
                    exc_info=True,
                )
        return failed

    def publish_block(self, username: str, blocked: bool) -> None:
        """Publish ``blocked``, then again whatever the store holds if another block or unblock
        committed meanwhile. Services keep the block or unblock published last; without the
        re-read, an unblock committed before a block but published after it would leave the
        account blocked here and its tokens accepted everywhere else."""
        while True:
            if blocked:
                self._publisher.block_subject(username, reason="admin_block")
            else:
                self._publisher.unblock_subject(username, reason="admin_unblock")
            user = self._store.user(username)
            if user is None or user.blocked == blocked:  # a deletion publishes its own event
                return
            blocked = user.blocked

    def _send(self, r: Revocation) -> None:
        p = self._publisher
        if r.kind == "session":
            p.revoke_session(r.target, sub=r.sub, reason=r.reason)
        elif r.kind == "subject":
            p.revoke_subject(r.target, issued_before=r.issued_before, reason=r.reason)
        elif r.kind == "version":
            assert r.min_version is not None
            p.bump_subject_version(r.target, min_version=r.min_version, reason=r.reason)
        elif r.kind in ("block", "unblock"):
            self.publish_block(r.target, r.kind == "block")
        else:  # "key"
            p.revoke_key(r.target, reason=r.reason)

    # the retry thread
    def start(self) -> None:
        """Retry what failed every ``interval`` seconds, until :meth:`close`. Start it in the
        serving process (after a fork), as ``create_app``'s lifespan does."""
        with self._lock:
            if self._thread is not None:
                return
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="identity-revocation-retry", daemon=True
            )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.publish_all()
            except Exception:  # the store itself failed (disk, lock): try again next time
                _log.exception("reading the pending revocations failed")

    def close(self, timeout: float | None = None) -> None:
        """Stop the retry thread (waiting for a publication in progress up to ``timeout``).
        What is still pending stays in the store for the next start."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            thread.join(timeout)
