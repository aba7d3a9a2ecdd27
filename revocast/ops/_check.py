"""``revocast check``: what the current revocation state would say about one token."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from consumer_sdk import RevocationState, RevokedBy

__all__ = ["TokenCheck", "check_token", "decode_untrusted"]


@dataclass(frozen=True, slots=True)
class TokenCheck:
    header: dict[str, Any]
    claims: dict[str, Any]
    rule: RevokedBy | None
    revoked_at: datetime | None
    expired: bool

    @property
    def accepted(self) -> bool:
        return self.rule is None and not self.expired

    def render(self) -> str:
        def when(value: Any) -> str:
            if isinstance(value, int | float) and not isinstance(value, bool):
                try:
                    return f"{value} ({datetime.fromtimestamp(value, UTC).isoformat()})"
                except (ValueError, OverflowError, OSError):
                    return f"{value} (out of range)"
            return repr(value)

        lines = [f"header: {json.dumps(self.header, sort_keys=True)}"]
        for name in ("iss", "sub", "aud", "jti", "sid", "ver"):
            if name in self.claims:
                lines.append(f"{name}: {self.claims[name]!r}")
        for name in ("iat", "nbf", "exp"):
            if name in self.claims:
                lines.append(f"{name}: {when(self.claims[name])}")
        lines.append("signature: NOT verified (this command inspects, it does not authenticate)")
        if self.rule is not None:
            at = self.revoked_at.isoformat() if self.revoked_at else "?"
            lines.append(f"verdict: REVOKED by rule {self.rule.value} (since {at})")
        elif self.expired:
            lines.append("verdict: EXPIRED (no revocation rule matches)")
        else:
            lines.append("verdict: accepted by the revocation state (no rule matches)")
        return "\n".join(lines)


def decode_untrusted(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims without verifying anything; raises ``jwt.DecodeError`` on garbage,
    including text that is not UTF-8 (bytes a shell passed through undecoded, which PyJWT's
    own ``encode`` turned into a ``UnicodeEncodeError`` traceback)."""
    try:
        raw = token.encode()
    except UnicodeEncodeError:
        raise jwt.DecodeError("token is not valid UTF-8 text") from None
    header = jwt.get_unverified_header(raw)
    claims: dict[str, Any] = jwt.decode(
        raw, options={"verify_signature": False, "verify_exp": False, "verify_aud": False}
    )
    return header, claims


def check_token(token: str, state: RevocationState, *, now: float) -> TokenCheck:
    header, claims = decode_untrusted(token)
    kid = header.get("kid")
    hit = state.check(claims, kid if isinstance(kid, str) else None)
    exp = claims.get("exp")
    expired = isinstance(exp, int | float) and not isinstance(exp, bool) and exp <= now
    return TokenCheck(
        header=header,
        claims=claims,
        rule=hit[0] if hit else None,
        revoked_at=hit[1] if hit else None,
        expired=expired,
    )
