"""CAEP / RISC events and back-channel logouts turned into Revocast events.

The table lives in receiver/README.md; this module is that table. Every rule expires
``max_token_lifetime`` after it is received, the longest a token it can match stays valid.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from receiver._settings import MappingPolicy
from receiver._subjects import Subject
from receiver._tokens import VerifiedLogout, VerifiedSet
from revocation_events import (
    BaseEvent,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
)

__all__ = ["CAEP", "RISC", "SSF", "Skipped", "events_of", "lifts_a_block", "map_logout", "map_set"]

CAEP = "https://schemas.openid.net/secevent/caep/event-type/"
RISC = "https://schemas.openid.net/secevent/risc/event-type/"
SSF = "https://schemas.openid.net/secevent/ssf/event-type/"

_RISK_RANK = {"low": 0, "medium": 1, "high": 2}
_INFORMATIONAL = frozenset(
    {
        f"{CAEP}session-established",
        f"{CAEP}session-presented",
        f"{CAEP}device-compliance-change",
        f"{RISC}account-credential-change-required",
        f"{RISC}identifier-changed",
        f"{RISC}identifier-recycled",
        f"{RISC}opt-in",
        f"{RISC}opt-out-initiated",
        f"{RISC}opt-out-cancelled",
        f"{RISC}opt-out-effective",
        f"{RISC}recovery-activated",
        f"{RISC}recovery-information-changed",
        f"{SSF}stream-updated",
        f"{SSF}verification",
    }
)
_DISABLE_REASONS = frozenset({"hijacking", "bulk-account"})
# Namespaces whose levels are numbered, higher meaning stronger (nist-aal1 < nist-aal2 …).
_NUMBERED_ASSURANCE = frozenset({"NIST-IAL", "NIST-AAL", "NIST-FAL", "ISO-IEC-29115"})
_LEVEL_NUMBER = re.compile(r"([0-9])\Z")
# Events whose rule is keyed by ``sub`` (a session or token rule names its sid or jti).
_BY_SUBJECT = (
    SubjectTokensRevoked,
    SubjectBlocked,
    SubjectUnblocked,
    SubjectDeleted,
    SubjectVersionBumped,
)


@dataclass(frozen=True, slots=True)
class Skipped:
    """An event acknowledged without publishing; ``why`` is a metrics label."""

    why: str


@dataclass(frozen=True, slots=True)
class _Context:
    issuer: str
    now: datetime
    expires_at: datetime
    reason: str

    def common(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "occurred_at": self.now,
            "expires_at": self.expires_at,
            "reason": self.reason[:256],
        }


def map_set(
    verified: VerifiedSet,
    subject: Subject,
    *,
    policy: MappingPolicy,
    issuer: str,
    now: datetime,
    max_token_lifetime: timedelta,
) -> BaseEvent | tuple[BaseEvent, ...] | Skipped:
    """The Revocast event(s) for one verified SET, or why there is none.

    A rule on ``sub`` is repeated for each other ``sub`` of the principal (aliases, an e-mail
    address's case forms), since SDKs match ``sub`` exactly; an unblock only for those that
    surely name the same account, unless the policy says e-mail local parts ignore case.
    """
    args = (policy, issuer, now, max_token_lifetime)
    mapped = _map_set(verified, subject, *args)
    if isinstance(mapped, Skipped):
        return mapped
    events = events_of(mapped)
    lifts = lifts_a_block(events) and not policy.email_ignores_case
    others = subject.also if lifts else subject.also + subject.folded
    for other in others:
        again = _map_set(verified, replace(subject, sub=other), *args)
        assert not isinstance(again, Skipped)  # only the subject differs
        events += tuple(e for e in events_of(again) if isinstance(e, _BY_SUBJECT))
    return events if len(events) > 1 else events[0]


def events_of(mapped: BaseEvent | tuple[BaseEvent, ...] | Skipped) -> tuple[BaseEvent, ...]:
    """The events :func:`map_set` or :func:`map_logout` came to, none for a skip."""
    if isinstance(mapped, Skipped):
        return ()
    return mapped if isinstance(mapped, tuple) else (mapped,)


def lifts_a_block(events: tuple[BaseEvent, ...]) -> bool:
    return any(isinstance(e, SubjectUnblocked) for e in events)


def _map_set(
    verified: VerifiedSet,
    subject: Subject,
    policy: MappingPolicy,
    issuer: str,
    now: datetime,
    max_token_lifetime: timedelta,
) -> BaseEvent | tuple[BaseEvent, ...] | Skipped:
    kind = verified.event_type
    payload = verified.payload
    short = _short_name(kind)
    ctx = _Context(issuer, now, now + max_token_lifetime, short)
    # A watermark must not lie in the future (it would refuse fresh logins) and, for a
    # delayed delivery, should not cut tokens issued after the event itself.
    at = min(verified.event_time or verified.issued_at, now)

    if kind == f"{CAEP}session-revoked":
        if _simple_opaque(verified.subject) and subject.sub is not None:
            # CAEP 1.0 (3.1) names the revoked session with a simple opaque subject in its own
            # example; other transmitters name a user that way. Either reading alone would
            # silently revoke nothing for the other, so both rules are published.
            return (
                SessionRevoked(sid=subject.sub, **ctx.common()),
                SubjectTokensRevoked(sub=subject.sub, issued_before=at, **ctx.common()),
            )
        return _revoke(subject, ctx, at, prefer_session=True)
    if kind == f"{CAEP}credential-change":
        details = [str(payload.get(k, ""))[:32] for k in ("credential_type", "change_type")]
        return _revoke(subject, _with_reason(ctx, short, *details), at, prefer_session=False)
    if kind == f"{CAEP}token-claims-change":
        return _claims_change(subject, payload, ctx, at, policy)
    if kind == f"{CAEP}assurance-level-change":
        if not policy.watermark_on_assurance_decrease:
            return Skipped("disabled_by_policy")
        if not _assurance_lower(payload):
            return Skipped("not_worse")
        return _revoke(subject, ctx, at, prefer_session=False)
    if kind == f"{CAEP}risk-level-change":
        if not policy.watermark_on_risk_increase:
            return Skipped("disabled_by_policy")
        if not _risk_worse(payload):
            return Skipped("not_worse")
        level = str(payload.get("current_level", "")).lower()[:16]
        return _revoke(subject, _with_reason(ctx, short, level), at, prefer_session=False)
    if kind == f"{RISC}credential-compromise":
        # The attacker may have logged in after the compromise: cut up to receipt.
        return _revoke(subject, ctx, now, prefer_session=False)
    if kind == f"{RISC}sessions-revoked":
        return _revoke(subject, ctx, at, prefer_session=False)
    if kind == f"{RISC}account-disabled":
        if subject.sub is None:
            return Skipped("no_usable_subject")
        why = payload.get("reason")
        ctx = _with_reason(ctx, short, why) if why in _DISABLE_REASONS else ctx
        common = ctx.common()
        del common["expires_at"]
        # Blocks and unblocks are ordered by occurred_at (last one wins): T, the
        # transmitter's own time, so a delayed or redelivered older SET cannot undo a newer one.
        return SubjectBlocked(sub=subject.sub, **{**common, "occurred_at": at})
    if kind == f"{RISC}account-enabled":
        if not policy.unblock_on_account_enabled:
            return Skipped("disabled_by_policy")
        if subject.sub is None:
            return Skipped("no_usable_subject")
        return SubjectUnblocked(sub=subject.sub, **{**ctx.common(), "occurred_at": at})
    if kind == f"{RISC}account-purged":
        if subject.sub is None:
            return Skipped("no_usable_subject")
        return SubjectDeleted(sub=subject.sub, **ctx.common())
    if kind in _INFORMATIONAL:
        return Skipped("informational")
    return Skipped("unknown_event_type")


def map_logout(
    verified: VerifiedLogout, *, issuer: str, now: datetime, max_token_lifetime: timedelta
) -> BaseEvent:
    """A back-channel logout: the session when named, else every token of the subject."""
    ctx = _Context(issuer, now, now + max_token_lifetime, "oidc:backchannel-logout")
    subject = Subject(sub=verified.sub, sid=verified.sid)
    event = _revoke(subject, ctx, min(verified.issued_at, now), prefer_session=True)
    assert not isinstance(event, Skipped)  # the verifier guarantees sid or sub
    return event


def _revoke(
    subject: Subject, ctx: _Context, at: datetime, *, prefer_session: bool
) -> BaseEvent | Skipped:
    """The narrowest rule the subject names: one token, else (for session events) the
    session, else all the subject's tokens issued before ``at``, else the session."""
    if subject.jti is not None:
        return TokenRevoked(jti=subject.jti, sub=subject.sub, **ctx.common())
    if subject.sid is not None and (prefer_session or subject.sub is None):
        return SessionRevoked(sid=subject.sid, sub=subject.sub, **ctx.common())
    if subject.sub is not None:
        return SubjectTokensRevoked(sub=subject.sub, issued_before=at, **ctx.common())
    return Skipped("no_usable_subject")


def _claims_change(
    subject: Subject,
    payload: Mapping[str, Any],
    ctx: _Context,
    at: datetime,
    policy: MappingPolicy,
) -> BaseEvent | Skipped:
    claims = payload.get("claims")
    claims = claims if isinstance(claims, dict) else {}
    # Claim names only: values (roles, e-mail addresses…) may be personal data.
    ctx = _with_reason(ctx, ctx.reason, "claims=" + ",".join(sorted(str(k)[:32] for k in claims)))
    version = claims.get(policy.version_claim)
    if (
        subject.sub is not None
        and subject.jti is None
        and isinstance(version, int)
        and not isinstance(version, bool)
        and 0 <= version <= 2**53
    ):
        return SubjectVersionBumped(sub=subject.sub, min_version=version, **ctx.common())
    # Without a version number, a watermark refuses exactly the tokens with the old claims.
    return _revoke(subject, ctx, at, prefer_session=False)


def _simple_opaque(identifier: Mapping[str, Any] | None) -> bool:
    return identifier is not None and identifier.get("format") == "opaque"


def _assurance_lower(payload: Mapping[str, Any]) -> bool:
    direction = payload.get("change_direction")
    if direction is not None:
        return bool(direction == "decrease")
    # change_direction is only a SHOULD: with both levels in a numbered namespace, compare.
    if str(payload.get("namespace", "")).upper() not in _NUMBERED_ASSURANCE:
        return False
    current, previous = (
        _LEVEL_NUMBER.search(str(payload.get(k, ""))[:64])
        for k in ("current_level", "previous_level")
    )
    return current is not None and previous is not None and current[1] < previous[1]


def _risk_worse(payload: Mapping[str, Any]) -> bool:
    current = _RISK_RANK.get(str(payload.get("current_level", "")).lower())
    previous = _RISK_RANK.get(str(payload.get("previous_level", "")).lower())
    if current is None:
        return False
    if previous is None:
        return current == _RISK_RANK["high"]
    return current > previous


def _short_name(kind: str) -> str:
    for prefix, name in ((CAEP, "caep"), (RISC, "risc"), (SSF, "ssf")):
        if kind.startswith(prefix):
            return f"{name}:{kind[len(prefix) :]}"[:128]
    return kind[:128]


def _with_reason(ctx: _Context, *parts: object) -> _Context:
    text = " ".join(str(p) for p in parts if p)
    return _Context(ctx.issuer, ctx.now, ctx.expires_at, text)
