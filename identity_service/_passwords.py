"""Password hashing with scrypt (memory-hard KDF from the standard library).

A hash records its own cost (``scrypt$n$r$p$salt$digest``): it is verified with the cost it
was made with, so raising the cost never locks anyone out, and :meth:`Scrypt.needs_rehash`
says when a login should store it again at the current cost."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Protocol

__all__ = ["OWASP_SCRYPT", "PasswordHasher", "Scrypt", "hash_password", "verify_password"]

_LEN = 16, 32  # salt, digest
_MAX_MEMORY = 1 << 30
"""A stored hash asking for more than this is refused, not computed: one crafted row must not
make each login of that name allocate gigabytes."""


class PasswordHasher(Protocol):
    """How the identity service hashes passwords: :class:`Scrypt` at the configured cost, or a
    test double. The service runs :meth:`hash` and :meth:`verify` a bounded number at a time."""

    def hash(self, password: str) -> str:
        """A new salted hash of ``password`` at the current cost."""
        ...

    def verify(self, password: str, stored: str) -> bool:
        """Whether ``password`` matches ``stored``, at the cost ``stored`` records."""
        ...

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made at another cost than :meth:`hash` uses. Computes no
        hash."""
        ...


def _memory(n: int, r: int, p: int) -> int:
    # What OpenSSL checks against ``maxmem``: the 128·r·(n+2) work area plus 128·r·p of blocks.
    return 128 * r * (n + 2 + p)


@dataclass(frozen=True, slots=True)
class Scrypt:
    """scrypt cost parameters: ``n`` (a power of two) rounds of ``r``·128-byte blocks, ``p``
    times. Memory is about 128·n·r bytes (128 MiB for the OWASP default)."""

    n: int
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if self.n < 2**10 or self.n & (self.n - 1):
            raise ValueError(f"scrypt_n must be a power of two >= 1024, got {self.n}")
        if not (1 <= self.r <= 64 and 1 <= self.p <= 16):
            raise ValueError(
                f"scrypt_r must be 1..64 and scrypt_p 1..16, got {self.r} and {self.p}"
            )
        if _memory(self.n, self.r, self.p) > _MAX_MEMORY:
            raise ValueError(f"scrypt_n={self.n} with scrypt_r={self.r} needs over 1 GiB per hash")

    def hash(self, password: str) -> str:
        salt = os.urandom(_LEN[0])
        digest = _scrypt(password, salt, self.n, self.r, self.p, _LEN[1])
        salt_b64, digest_b64 = base64.b64encode(salt).decode(), base64.b64encode(digest).decode()
        return f"scrypt${self.n}${self.r}${self.p}${salt_b64}${digest_b64}"

    def verify(self, password: str, stored: str) -> bool:
        """:func:`verify_password`: at the cost ``stored`` records, whatever these are."""
        return verify_password(password, stored)

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with other parameters than these (or is unreadable)."""
        parsed = _parse(stored)
        return parsed is None or parsed[:3] != (self.n, self.r, self.p)


OWASP_SCRYPT = Scrypt(n=2**17, r=8, p=1)
"""OWASP Password Storage Cheat Sheet's scrypt minimum (N=2^17, r=8, p=1)."""


def hash_password(password: str, cost: Scrypt = OWASP_SCRYPT) -> str:
    """A new salted hash of ``password`` that records ``cost``."""
    return cost.hash(password)


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored``, computed with the cost ``stored`` records.
    False for a malformed hash, or one whose cost exceeds 1 GiB of memory."""
    parsed = _parse(stored)
    if parsed is None:
        return False
    n, r, p, salt, expected = parsed
    try:
        digest = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, OverflowError):  # parameters OpenSSL refuses
        return False
    return hmac.compare_digest(digest, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # The default maxmem (32 MiB) refuses n=2^17, r=8 (128 MiB).
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=_memory(n, r, p)
    )


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    try:
        scheme, n, r, p, salt_b64, digest_b64 = stored.split("$")
        if scheme != "scrypt":
            return None
        cost = int(n), int(r), int(p)
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except (ValueError, TypeError):
        return None
    if min(cost) < 1 or _memory(*cost) > _MAX_MEMORY or not digest:
        return None
    return (*cost, salt, digest)
