"""The revocation state: what every revocation event means for a token, in memory.

One writer (the sync thread) applies events; request threads call :meth:`RevocationState.check`
without a lock. That is safe because the writer never mutates a value a reader can hold: it
replaces whole tuples in dicts, swaps whole attributes, and the jti table publishes entries
atomically (see :mod:`consumer_sdk._fptable`). ``apply`` is idempotent and commutative per rule,
so any replay order and any duplicates give the same state.

Merge semantics: per rule, the state holds what its *winner* says, the winner being the
greatest event by the order of ``streams._rules.rank`` (see that module for the per-kind
reasoning). The streams worker keeps exactly that winner in the state topic, so an SDK
bootstrapped from it holds the same rules as one that replayed the log:

* ``sid``, deleted subject: the latest deadline, then the earliest ``occurred_at``; the
  deadline is the greatest of all events;
* subject and global watermarks: the latest ``issued_before``, then the latest deadline, then
  the earliest ``occurred_at``; the deadline is the winner's, ``max(expires_at, T + L)``
  (an older watermark's tokens are all expired by then);
* version: the highest ``min_version``, then as above; the deadline is the winner's (tokens
  below a lower version were all issued before the winning bump);
* block/unblock: last writer wins by ``(occurred_at, event id)``, a block on a full tie;
* key: the earliest ``occurred_at``;
* jti (the fingerprint table): the latest deadline and the earliest time. Every event of one
  ``jti`` carries the token's own ``exp`` as ``expires_at``, so that is the winner's too.

Why not cachetools' ``TTLCache``/``TLRUCache``: they evict the least recently used entry when
full, which for us would silently forget a revocation that still covers a valid token; they are
not thread-safe, and even lookups reorder them, so every request would need a lock; and they
cost ~290 bytes and ~1 µs per entry where the table here costs ~34-38 bytes and ~0.2 µs.
Expiry is instead a time wheel of buckets of keys for the other rules and a sweep of the
table's deadlines for jtis, both run by :meth:`RevocationState.expire`; lookups also ignore
entries whose deadline has passed, so correctness never depends on when expiry runs.
There is no size cap: memory is bounded by the revocation rate times the token lifetime.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from itertools import chain
from typing import Any, NamedTuple

from pydantic import AwareDatetime, TypeAdapter

from consumer_sdk._errors import RevokedBy
from consumer_sdk._fptable import FingerprintTable, fingerprint
from revocation_events import (
    Event,
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

__all__ = ["RevocationState"]

_BUCKET_SECONDS = 60
_FOREVER = math.inf


class _Watermark(NamedTuple):
    issued_before: float
    at: float
    until: float


class _Block(NamedTuple):
    order: tuple[float, int, bool]  # (occurred_at, event id, blocked): last writer wins;
    # on a full tie a block beats an unblock (fail safe, and independent of arrival order)
    blocked: bool
    until: float


class _Deleted(NamedTuple):
    at: float
    until: float


class _Version(NamedTuple):
    min_version: int
    at: float
    until: float


class _Subject(NamedTuple):
    watermark: _Watermark | None = None
    block: _Block | None = None
    deleted: _Deleted | None = None
    version: _Version | None = None


_EMPTY_SUBJECT = _Subject()
_SUBJECT_KINDS = ("subject_watermark", "blocked", "unblocked", "deleted", "version")


def _subject_kinds(rec: _Subject) -> tuple[bool, ...]:
    """Which of :data:`_SUBJECT_KINDS` ``rec`` holds."""
    block = rec.block
    return (
        rec.watermark is not None,
        block is not None and block.blocked,
        block is not None and not block.blocked,
        rec.deleted is not None,
        rec.version is not None,
    )


def _pydantic_utc() -> tzinfo:
    """The ``tzinfo`` pydantic gives every UTC time it parses ("Z" or "+00:00"): one shared
    object, with an offset of zero (checked; else an object no time carries)."""
    tz = TypeAdapter(AwareDatetime).validate_json(b'"1970-01-01T00:00:00Z"').tzinfo
    if tz is None or tz.utcoffset(None) != timedelta(0):  # pragma: no cover - another pydantic
        return timezone(timedelta(0), "never-matched")
    return tz


_PYD_UTC = _pydantic_utc()
_PYD_EPOCH = datetime(1970, 1, 1, tzinfo=_PYD_UTC)


def _ts(when: datetime) -> float:
    """``when.timestamp()``, the same float, in a third of the time for the times events carry.

    An aware ``timestamp()`` subtracts the epoch in UTC, asking both times' ``tzinfo`` for
    their offset, and pydantic's tzinfo answers slowly (~0.35 µs of ~0.55). Subtracting an
    epoch carrying the very same zero-offset tzinfo skips both questions; the difference and
    its ``total_seconds()`` are then exactly what ``timestamp()`` computes.
    """
    if when.tzinfo is _PYD_UTC:
        return (when - _PYD_EPOCH).total_seconds()
    return when.timestamp()


def _dt(ts: float) -> datetime:
    try:
        return datetime.fromtimestamp(ts, UTC)
    except (ValueError, OverflowError, OSError):  # an event dated outside the UTC calendar
        return datetime.min.replace(tzinfo=UTC) if ts < 0 else datetime.max.replace(tzinfo=UTC)


class RevocationState:
    """The store: all revocation rules currently in force.

    ``grace`` (seconds, normally the verifier's leeway) keeps every time-limited entry that
    much longer, because a token is still accepted ``leeway`` seconds after its ``exp``.
    ``max_token_lifetime`` bounds how long a rule about "tokens issued before X" matters.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        max_token_lifetime: float,
        version_claim: str = "ver",
        grace: float = 0.0,
    ) -> None:
        self._clock = clock
        self._lifetime = max_token_lifetime
        self._version_claim = version_claim
        self._grace = grace
        self._jti = FingerprintTable()
        self._sids: dict[str, tuple[float, float]] = {}  # sid -> (at, until)
        self._subjects: dict[str, _Subject] = {}
        self._subject_counts = [0] * len(_SUBJECT_KINDS)
        """Subject records holding each rule of :data:`_SUBJECT_KINDS`, kept as records change
        (:meth:`_set_subject`): counting them on demand walked every subject, on the sync
        thread at each expiry round and in every health probe."""
        self._kids: dict[str, float] = {}  # kid -> at
        self._global: _Watermark | None = None
        self._wheel: dict[int, set[tuple[str, str]]] = {}  # bucket -> {(kind, key)}
        self._others = False
        """Whether any sid, subject, key or global rule is held: :meth:`check` tests this one
        attribute instead of four in the usual state of jtis only. Recomputed by
        :meth:`_note_others` after every change to those rules (set after an add, cleared
        after a removal, so a reader racing the writer sees the state before or after)."""

    # -- reading (request path) ------------------------------------------------------------

    def check(
        self, claims: Mapping[str, Any], kid: str | None
    ) -> tuple[RevokedBy, datetime] | None:
        """The first rule that revokes a token with these claims and header ``kid``, if any."""
        jti = claims.get("jti")
        table = self._jti
        if type(jti) is str and table.used:  # an empty table: no need to hash a fresh jti
            index, keys, deadlines, times, mask = table.slots
            fp = hash(jti) or 1
            i = fp & mask
            while j := index[i]:
                if keys[j] == fp:
                    if deadlines[j] + self._grace > self._clock():
                        return RevokedBy.JTI, _dt(times[j])
                    break
                i = (i + 1) & mask
        if not self._others:
            return None
        if self._sids:
            sid = claims.get("sid")
            hit = self._sids.get(sid) if type(sid) is str else None
            if hit is not None and hit[1] + self._grace > self._clock():
                return RevokedBy.SID, _dt(hit[0])
        if self._subjects:  # skip hashing a fresh ``sub`` string when there is nothing to find
            sub = claims.get("sub")
            if type(sub) is str and (rec := self._subjects.get(sub)) is not None:
                found = self._check_subject(rec, claims)
                if found is not None:
                    return found
        if self._kids and kid is not None and (at := self._kids.get(kid)) is not None:
            return RevokedBy.KEY, _dt(at)
        g = self._global
        if (
            g is not None
            and _iat(claims) < g.issued_before
            and g.until + self._grace > self._clock()
        ):
            return RevokedBy.GLOBAL, _dt(g.at)
        return None

    def key_revoked(self, kid: str) -> tuple[RevokedBy, datetime] | None:
        """The key rule for ``kid``, if that signing key is revoked."""
        at = self._kids.get(kid) if self._kids else None
        return None if at is None else (RevokedBy.KEY, _dt(at))

    def _check_subject(
        self, rec: _Subject, claims: Mapping[str, Any]
    ) -> tuple[RevokedBy, datetime] | None:
        live = self._clock() - self._grace
        if (d := rec.deleted) is not None and d.until > live:
            return RevokedBy.DELETED, _dt(d.at)
        if (b := rec.block) is not None and b.blocked:
            return RevokedBy.BLOCKED, _dt(b.order[0])
        if (w := rec.watermark) is not None and w.until > live and _iat(claims) < w.issued_before:
            return RevokedBy.SUBJECT_WATERMARK, _dt(w.at)
        v = rec.version
        if v is not None and v.until > live:
            ver = claims.get(self._version_claim, 0)
            if type(ver) is not int or ver < v.min_version:
                return RevokedBy.VERSION, _dt(v.at)
        return None

    # -- writing (sync thread only) --------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Merge one event; return whether the state changed. Idempotent and commutative."""
        if isinstance(event, TokenRevoked):
            # The bulk of every log, so the lean path: ``_ts`` inlined, and an expired token
            # needs only one time converted.
            exp = event.expires_at
            until = (exp - _PYD_EPOCH).total_seconds() if exp.tzinfo is _PYD_UTC else _ts(exp)
            live = self._clock() - self._grace
            if until <= live:
                return False
            occ = event.occurred_at
            at = (occ - _PYD_EPOCH).total_seconds() if occ.tzinfo is _PYD_UTC else _ts(occ)
            # fingerprint() inlined: a call costs as much as the hash.
            return self._jti.add(hash(event.jti) or 1, until, at, live)
        changed = self._apply_rule(event)
        if changed:
            self._note_others()
        return changed

    def _apply_rule(self, event: Event) -> bool:
        """:meth:`apply` for every event but ``TokenRevoked``."""
        at = _ts(event.occurred_at)
        live = self._clock() - self._grace
        if isinstance(event, SessionRevoked):
            return self._apply_sid(event.sid, at, self._until(event.expires_at, at), live)
        if isinstance(event, KeyRevoked):
            old = self._kids.get(event.kid)
            if old is not None and old <= at:
                return False
            self._kids = {**self._kids, event.kid: at}
            return True
        if isinstance(event, GlobalTokensRevoked):
            return self._apply_global(event, at, live)
        return self._apply_subject(event, at, live)

    def _note_others(self) -> None:
        self._others = bool(self._sids or self._subjects or self._kids) or (
            self._global is not None
        )

    def restore_jtis(
        self, columns: Iterable[tuple[Sequence[str], Sequence[int], Sequence[int]]]
    ) -> int:
        """Bulk-load jtis from a snapshot; return how many were still live (sync thread only).

        ``columns`` are ``(jtis, deadlines, times)`` triples in whole seconds. Entries merge
        as :meth:`apply` merges ``TokenRevoked`` and dead ones are skipped as it skips them;
        the table is filled in one rebuild and swapped in whole
        (:meth:`FingerprintTable.bulk_load`), so readers never see it half-loaded.
        """
        columns = list(columns)
        for jtis, deadlines, times in columns:
            if not len(jtis) == len(deadlines) == len(times):
                raise ValueError("jti columns differ in length")
        count = sum(len(jtis) for jtis, _, _ in columns)
        if not count:
            return 0
        return self._jti.bulk_load(
            map(fingerprint, chain.from_iterable(jtis for jtis, _, _ in columns)),
            chain.from_iterable(dls for _, dls, _ in columns),
            chain.from_iterable(ts for _, _, ts in columns),
            count,
            self._clock() - self._grace,
        )

    def _until(self, expires_at: datetime, start: float) -> float:
        return max(_ts(expires_at), start + self._lifetime)

    def _apply_sid(self, sid: str, at: float, until: float, live: float) -> bool:
        if until <= live:
            return False
        old = self._sids.get(sid)
        if old is not None and (until, -at) <= (old[1], -old[0]):
            return False
        new = (at, until)
        self._sids[sid] = new
        self._schedule("sid", sid, until)
        return True

    def _apply_global(self, event: GlobalTokensRevoked, at: float, live: float) -> bool:
        t = _ts(event.issued_before)
        until = self._until(event.expires_at, t)
        if until <= live:
            return False
        new = _merge_watermark(self._global, _Watermark(t, at, until))
        if new == self._global:
            return False
        self._global = new
        return True

    def _apply_subject(self, event: Event, at: float, live: float) -> bool:
        sub = event.subject()
        assert sub is not None
        rec = self._subjects.get(sub, _EMPTY_SUBJECT)
        if isinstance(event, SubjectTokensRevoked):
            t = _ts(event.issued_before)
            wm = _Watermark(t, at, self._until(event.expires_at, t))
            if wm.until <= live:
                return False
            new = rec._replace(watermark=_merge_watermark(rec.watermark, wm))
            until = wm.until
        elif isinstance(event, SubjectBlocked | SubjectUnblocked):
            blocked = isinstance(event, SubjectBlocked)
            until = (
                self._until(event.expires_at, at)
                if isinstance(event, SubjectUnblocked)
                else _FOREVER
            )
            order = (at, event.id.int, blocked)
            if rec.block is not None and rec.block.order >= order:
                return False
            new = rec._replace(block=_Block(order, blocked, until))
        elif isinstance(event, SubjectDeleted):
            until = self._until(event.expires_at, at)
            if until <= live:
                return False
            old_d = rec.deleted
            if old_d is not None and (until, -at) <= (old_d.until, -old_d.at):
                return False
            new = rec._replace(deleted=_Deleted(at, until))
        elif isinstance(event, SubjectVersionBumped):
            until = self._until(event.expires_at, at)
            if until <= live:
                return False
            new = rec._replace(
                version=_merge_version(rec.version, _Version(event.min_version, at, until))
            )
        else:  # pragma: no cover - the union is exhaustive
            raise TypeError(f"unknown event {type(event).__name__}")
        if new == rec:
            return False
        self._set_subject(sub, rec, new)
        self._schedule("sub", sub, until)
        return True

    def _set_subject(self, sub: str, old: _Subject, new: _Subject) -> None:
        """Store ``new`` for ``sub`` (drop it when empty), counting the change of rules."""
        counts = self._subject_counts
        for i, had in enumerate(_subject_kinds(old)):
            counts[i] -= had
        for i, has in enumerate(_subject_kinds(new)):
            counts[i] += has
        if new == _EMPTY_SUBJECT:
            self._subjects.pop(sub, None)
        else:
            self._subjects[sub] = new

    def _schedule(self, kind: str, key: str, until: float) -> None:
        if until != _FOREVER:
            self._wheel.setdefault(int(until) // _BUCKET_SECONDS, set()).add((kind, key))

    # -- maintenance -----------------------------------------------------------------------

    def expire(self) -> int:
        """Drop entries that can no longer affect any token; return how many were dropped
        (not counting due jtis that a growth of the table in :meth:`apply` dropped already).

        Every due entry of every kind goes, except jtis in a table of more than
        :data:`~consumer_sdk._fptable.SWEEP_MIN` entries: those are swept a part per call,
        all within :data:`~consumer_sdk._fptable.SWEEP_CALLS` calls (``check`` ignores
        them meanwhile; they still count in :meth:`size_by_kind`).
        """
        live = self._clock() - self._grace
        current = int(live) // _BUCKET_SECONDS
        dropped = self._jti.sweep(live)
        for bucket in sorted(b for b in self._wheel if b <= current):
            keep: set[tuple[str, str]] = set()
            for kind, key in self._wheel.pop(bucket):
                if kind == "sid":
                    hit = self._sids.get(key)
                    if hit is not None and hit[1] <= live:
                        del self._sids[key]
                        dropped += 1
                    elif hit is not None and bucket == current:
                        keep.add((kind, key))
                else:
                    n, pending = self._expire_subject(key, live)
                    dropped += n
                    if pending and bucket == current:
                        keep.add((kind, key))
            if keep:
                self._wheel[bucket] = keep
        if self._global is not None and self._global.until <= live:
            self._global = None
            dropped += 1
        self._note_others()
        return dropped

    def _expire_subject(self, sub: str, live: float) -> tuple[int, bool]:
        """Drop the expired parts of a subject's record; return (dropped, anything left)."""
        rec = self._subjects.get(sub)
        if rec is None:
            return 0, False
        new = _Subject(
            watermark=rec.watermark if rec.watermark and rec.watermark.until > live else None,
            block=rec.block if rec.block and rec.block.until > live else None,
            deleted=rec.deleted if rec.deleted and rec.deleted.until > live else None,
            version=rec.version if rec.version and rec.version.until > live else None,
        )
        left = new != _EMPTY_SUBJECT
        if new == rec:
            return 0, left
        self._set_subject(sub, rec, new)
        return sum(a is not None and b is None for a, b in zip(rec, new, strict=True)), left

    # -- inspection ------------------------------------------------------------------------

    def size_by_kind(self) -> dict[str, int]:
        """Entries per rule. Entries past their deadline count until :meth:`expire` drops
        them: the next call, or for jtis in a large table within a few calls (see there)."""
        counts = dict(zip(_SUBJECT_KINDS, self._subject_counts, strict=True))
        return {
            "jti": len(self._jti),
            "sid": len(self._sids),
            **counts,
            "key": len(self._kids),
            "global": int(self._global is not None),
        }

    def snapshot(self) -> tuple[Any, ...]:
        """A canonical, comparable value of every rule still in force (within this process:
        jti fingerprints use the per-process string hash)."""
        live = self._clock() - self._grace
        jtis = sorted((fp, dl, t) for fp, dl, t in self._jti.items() if dl > live)
        sids = sorted((k, v) for k, v in self._sids.items() if v[1] > live)
        subjects = []
        for sub in sorted(self._subjects):
            rec = self._subjects[sub]
            kept = _Subject(
                watermark=rec.watermark if rec.watermark and rec.watermark.until > live else None,
                block=rec.block
                if rec.block and (rec.block.blocked or rec.block.until > live)
                else None,
                deleted=rec.deleted if rec.deleted and rec.deleted.until > live else None,
                version=rec.version if rec.version and rec.version.until > live else None,
            )
            if kept != _EMPTY_SUBJECT:
                subjects.append((sub, tuple(kept)))
        g = self._global if self._global is not None and self._global.until > live else None
        return (tuple(jtis), tuple(sids), tuple(subjects), tuple(sorted(self._kids.items())), g)


def _iat(claims: Mapping[str, Any]) -> float:
    iat = claims.get("iat")
    # A token without a numeric iat is older than any watermark: fail safe.
    return iat if type(iat) is int or type(iat) is float else -math.inf


def _merge_watermark(old: _Watermark | None, new: _Watermark) -> _Watermark:
    """The winner whole (``streams._rules.rank``): the latest ``issued_before``, then the
    latest deadline, then the earliest time. Not the max of every deadline: a lower
    watermark only covers tokens issued before it, all expired ``L`` after the winner's."""
    if old is None:
        return new
    if (new.issued_before, new.until, -new.at) > (old.issued_before, old.until, -old.at):
        return new
    return old


def _merge_version(old: _Version | None, new: _Version) -> _Version:
    """The winner whole: the highest ``min_version``, then the latest deadline, then the
    earliest time (tokens below a lower version predate the winning bump)."""
    if old is None:
        return new
    if (new.min_version, new.until, -new.at) > (old.min_version, old.until, -old.at):
        return new
    return old
