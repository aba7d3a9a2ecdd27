"""Subject identifiers (RFC 9493 and SSF 1.0) reduced to what a Revocast event can name.

Revocast rules name a token subject (``sub``), a session (``sid``) or one token (``jti``).

* ``opaque`` ``id`` and ``iss_sub`` ``sub`` name the subject; inside a complex subject's
  ``session`` member an ``opaque`` ``id`` names the session.
* ``jwt_id`` names one token (its ``iss`` is checked like ``iss_sub``'s).
* ``email`` names the subject only when the policy says tokens use e-mail addresses as ``sub``.
  It also names its spellings with the domain, and all, in lower case (:func:`email_subject`).
* RISC 1.0's ``subject_type`` (``iss-sub``, ``email``…) is read as ``format`` (``iss_sub``…).
* ``complex`` (or a draft-style object with ``user``/``session`` members and no ``format``)
  combines them. ``aliases`` names every ``sub`` of its identifiers (tokens may carry any of
  them) and the first ``sid`` and ``jti``; a subject listing more aliases than the receiver
  accepts is refused whole, never cut short.
* Everything else (``phone_number``, ``account``, ``did``, ``uri``, devices, tenants…) names
  nothing we can revoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver._errors import SetRejected
from receiver._settings import DEFAULT_MAX_ALIASES

__all__ = ["Subject", "email_subject", "resolve_subject", "subject_shape"]

_MAX = 256
_COMPLEX_MEMBERS = ("user", "session", "device", "application", "tenant", "org_unit", "group")


@dataclass(frozen=True, slots=True)
class Subject:
    sub: str | None = None
    sid: str | None = None
    jti: str | None = None
    issuers: frozenset[str] = field(default_factory=frozenset)
    """``iss`` values the identifier names (``iss_sub``, ``jwt_id``)."""
    also: tuple[str, ...] = ()
    """More ``sub`` values of the same principal: later ``aliases`` (tokens may carry any of
    them), an e-mail address with its domain in lower case. Every rule on ``sub`` is
    published for each of them too."""
    folded: tuple[str, ...] = ()
    """E-mail ``sub`` values all in lower case, where that differs: the same mailbox wherever
    the local part ignores case (nearly everywhere), but maybe another one. Rules that revoke
    are published for them too; an unblock is not, lest it lift another account's block."""
    unscoped: bool = False
    """Some ``sub`` value was named without an issuer (``opaque``, ``email``)."""

    def merged(self, other: Subject) -> Subject:
        subs = [s for s in (self.sub, *self.also, other.sub, *other.also) if s is not None]
        named = dict.fromkeys(subs)
        return Subject(
            sub=subs[0] if subs else None,
            sid=self.sid or other.sid,
            jti=self.jti or other.jti,
            issuers=self.issuers | other.issuers,
            also=tuple(named)[1:],
            folded=tuple(f for f in dict.fromkeys(self.folded + other.folded) if f not in named),
            unscoped=self.unscoped or other.unscoped,
        )


def email_subject(address: str) -> Subject:
    """An e-mail address as a token ``sub``, with the spellings tokens may carry instead.

    SDKs match ``sub`` exactly, and RFC 9493 (3.2.3) leaves an address's canonical form to
    each system: a transmitter writing ``Alice@Example.COM`` for tokens carrying
    ``alice@example.com`` must still revoke them. The domain is case-insensitive (RFC 5321
    2.4), so lowering it names the same mailbox; the local part may be case-sensitive, so the
    all-lower-case form may name another (see :attr:`Subject.folded`).
    """
    local, at, domain = address.rpartition("@")
    same = f"{local}{at}{domain.lower()}" if at else address
    lower = address.lower()
    return Subject(
        sub=address,
        also=tuple(s for s in (same,) if s != address and len(s) <= _MAX),
        folded=tuple(s for s in (lower,) if s not in (address, same) and len(s) <= _MAX),
        unscoped=True,
    )


def resolve_subject(
    identifier: Mapping[str, Any] | None,
    *,
    email_is_subject: bool,
    max_aliases: int = DEFAULT_MAX_ALIASES,
) -> Subject:
    """What ``identifier`` names; raise :class:`SetRejected` for a malformed identifier, or
    one whose ``aliases`` lists (all of them together) name more than ``max_aliases``
    identifiers: every alias gets its own rules, and publishing only some would leave the
    others' tokens valid while the transmitter counts the SET delivered."""
    if identifier is None:
        return Subject()
    walk = _Walk(email_is_subject=email_is_subject, aliases_left=max_aliases)
    return walk.resolve(identifier, role="user", depth=0)


@dataclass(slots=True)
class _Walk:
    email_is_subject: bool
    aliases_left: int

    def resolve(self, identifier: Mapping[str, Any], *, role: str, depth: int) -> Subject:
        if depth > 3:
            raise SetRejected("invalid_request", "subject identifier nested too deeply")
        fmt = identifier.get("format")
        if fmt is None and isinstance(legacy := identifier.get("subject_type"), str):
            # RISC 1.0 and the drafts before RFC 9493 spell it subject_type, "iss-sub".
            fmt = legacy.replace("-", "_")
        if fmt == "complex" or (fmt is None and any(m in identifier for m in _COMPLEX_MEMBERS)):
            result = Subject()
            for member in ("user", "session"):
                inner = identifier.get(member)
                if inner is None:
                    continue
                if not isinstance(inner, dict):
                    raise SetRejected(
                        "invalid_request", f"subject member {member} is not an object"
                    )
                result = result.merged(self.resolve(inner, role=member, depth=depth + 1))
            return result
        if fmt == "aliases":
            identifiers = identifier.get("identifiers")
            if not isinstance(identifiers, list):
                raise SetRejected("invalid_request", "aliases subject needs an identifiers list")
            # Counted before any is read: the list's length is the transmitter's to choose.
            self.aliases_left -= len(identifiers)
            if self.aliases_left < 0:
                raise SetRejected(
                    "invalid_request", "subject lists more aliases than this receiver accepts"
                )
            result = Subject()
            for inner in identifiers:
                if not isinstance(inner, dict):
                    raise SetRejected("invalid_request", "alias is not an object")
                result = result.merged(self.resolve(inner, role=role, depth=depth + 1))
            return result
        if fmt == "opaque":
            value = _string(identifier, "id")
            return Subject(sid=value) if role == "session" else Subject(sub=value, unscoped=True)
        if fmt == "iss_sub":
            iss = _string(identifier, "iss")
            value = _string(identifier, "sub")
            if role == "session":
                return Subject(sid=value, issuers=frozenset({iss}))
            return Subject(sub=value, issuers=frozenset({iss}))
        if fmt == "jwt_id":
            return Subject(
                jti=_string(identifier, "jti"), issuers=frozenset({_string(identifier, "iss")})
            )
        if fmt == "email" and self.email_is_subject and role == "user":
            return email_subject(_string(identifier, "email"))
        if not isinstance(fmt, str):
            raise SetRejected("invalid_request", "subject identifier has no format")
        return Subject()


def subject_shape(identifier: Mapping[str, Any] | None) -> str:
    """The formats and member names of ``identifier``, never its values (addresses, phone
    numbers…), to say in a log what a subject was made of: ``complex(device=opaque,tenant=…)``."""
    return _shape(identifier, depth=0)[:200]


def _shape(identifier: object, *, depth: int) -> str:
    if not isinstance(identifier, Mapping):
        return "?"
    fmt = identifier.get("format", identifier.get("subject_type"))
    name = str(fmt)[:32] if isinstance(fmt, str) else "?"
    if depth >= 2:
        return name
    members = [m for m in _COMPLEX_MEMBERS if m in identifier]
    if members and fmt in (None, "complex"):
        inner = ",".join(f"{m}={_shape(identifier[m], depth=depth + 1)}" for m in members)
        return f"complex({inner})"
    if fmt == "aliases" and isinstance(identifiers := identifier.get("identifiers"), list):
        inner = ",".join(_shape(i, depth=depth + 1) for i in identifiers[:8])
        return f"aliases({inner}{',…' if len(identifiers) > 8 else ''})"
    return name


def _string(identifier: Mapping[str, Any], name: str) -> str:
    value = identifier.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX:
        fmt = str(identifier.get("format"))[:32]
        raise SetRejected("invalid_request", f"{fmt} subject needs {name} (1-{_MAX} characters)")
    return value
