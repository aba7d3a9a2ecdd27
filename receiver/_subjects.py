"""Subject identifiers (RFC 9493 and SSF 1.0) reduced to what a Revocast event can name.

Revocast rules name a token subject (``sub``), a session (``sid``) or one token (``jti``).

* ``opaque`` ``id`` and ``iss_sub`` ``sub`` name the subject; inside a complex subject's
  ``session`` member an ``opaque`` ``id`` names the session.
* ``jwt_id`` names one token (its ``iss`` is checked like ``iss_sub``'s).
* ``email`` names the subject only when the policy says tokens use e-mail addresses as ``sub``.
* RISC 1.0's ``subject_type`` (``iss-sub``, ``email``…) is read as ``format`` (``iss_sub``…).
* ``complex`` (or a draft-style object with ``user``/``session`` members and no ``format``)
  combines them; ``aliases`` takes the first value found for each field.
* Everything else (``phone_number``, ``account``, ``did``, ``uri``, devices, tenants…) names
  nothing we can revoke.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from receiver._errors import SetRejected

__all__ = ["Subject", "resolve_subject"]

_MAX = 256
_COMPLEX_MEMBERS = ("user", "session", "device", "application", "tenant", "org_unit", "group")


@dataclass(frozen=True, slots=True)
class Subject:
    sub: str | None = None
    sid: str | None = None
    jti: str | None = None
    issuers: frozenset[str] = field(default_factory=frozenset)
    """``iss`` values the identifier names (``iss_sub``, ``jwt_id``)."""

    def merged(self, other: Subject) -> Subject:
        return Subject(
            sub=self.sub or other.sub,
            sid=self.sid or other.sid,
            jti=self.jti or other.jti,
            issuers=self.issuers | other.issuers,
        )


def resolve_subject(identifier: Mapping[str, Any] | None, *, email_is_subject: bool) -> Subject:
    """What ``identifier`` names; raise :class:`SetRejected` for a malformed identifier."""
    if identifier is None:
        return Subject()
    return _resolve(identifier, role="user", email_is_subject=email_is_subject, depth=0)


def _resolve(
    identifier: Mapping[str, Any], *, role: str, email_is_subject: bool, depth: int
) -> Subject:
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
                raise SetRejected("invalid_request", f"subject member {member} is not an object")
            result = result.merged(
                _resolve(inner, role=member, email_is_subject=email_is_subject, depth=depth + 1)
            )
        return result
    if fmt == "aliases":
        identifiers = identifier.get("identifiers")
        if not isinstance(identifiers, list):
            raise SetRejected("invalid_request", "aliases subject needs an identifiers list")
        result = Subject()
        for inner in identifiers:
            if not isinstance(inner, dict):
                raise SetRejected("invalid_request", "alias is not an object")
            result = result.merged(
                _resolve(inner, role=role, email_is_subject=email_is_subject, depth=depth + 1)
            )
        return result
    if fmt == "opaque":
        value = _string(identifier, "id")
        return Subject(sid=value) if role == "session" else Subject(sub=value)
    if fmt == "iss_sub":
        iss = _string(identifier, "iss")
        value = _string(identifier, "sub")
        named = Subject(sid=value) if role == "session" else Subject(sub=value)
        return Subject(sub=named.sub, sid=named.sid, issuers=frozenset({iss}))
    if fmt == "jwt_id":
        return Subject(
            jti=_string(identifier, "jti"), issuers=frozenset({_string(identifier, "iss")})
        )
    if fmt == "email" and email_is_subject and role == "user":
        return Subject(sub=_string(identifier, "email"))
    if not isinstance(fmt, str):
        raise SetRejected("invalid_request", "subject identifier has no format")
    return Subject()


def _string(identifier: Mapping[str, Any], name: str) -> str:
    value = identifier.get(name)
    if not isinstance(value, str) or not 0 < len(value) <= _MAX:
        fmt = str(identifier.get("format"))[:32]
        raise SetRejected("invalid_request", f"{fmt} subject needs {name} (1-{_MAX} characters)")
    return value
