"""Failed-login throttle: a sliding window of failures per username and per client address.

Each login is charged to both keys *before* its password is hashed and refunded only if the
password was right, so concurrent guesses cannot all pass the check before any fails. Over
either limit the login is refused without hashing, the same way for every username, known or
not.

A success refunds its own charge and nothing else. Resetting the username's failures would
let the real user's logins give an attacker elsewhere a fresh allowance on every one; resetting
the client's would let an attacker interleave logins to an account of their own. Failures only
age out of the window. The cost: an attacker can keep a username locked (5 failures per window
by default), as with any lockout; the per-client limit bounds how many names one address locks.

Memory is bounded by ``max_keys`` per table and ``limit`` timestamps per key. A full table
drops its least recently used key, which could reset a victim's count; every key costs the
attacker one password hash on this server, so filling ``max_keys`` within one window takes
``max_keys`` hashes (with the defaults, 100 000 at ~0.5 s: some 14 core-hours).
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cachetools import TTLCache

__all__ = ["Charge", "LoginThrottle", "TooManyFailures", "client_key"]


class TooManyFailures(Exception):
    """Refused without checking the password; ``retry_after`` whole seconds, at least 1."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("too many failed logins")
        self.retry_after = max(1, math.ceil(retry_after))


@dataclass(frozen=True, slots=True)
class Charge:
    """One password check, counted as a failure until refunded."""

    username: str
    client: str
    at: float


def client_key(host: str | None) -> str:
    """The throttle's key for a client address: an IPv6 client is its /64 (one subscriber
    usually holds a whole /64), an IPv4-mapped one its IPv4 address."""
    if host is None:
        return "unknown"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an address (a test client's name, a Unix socket)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class LoginThrottle:
    def __init__(
        self,
        *,
        per_user: int,
        per_client: int,
        window: float,
        max_keys: int,
        clock: Callable[[], float],
    ) -> None:
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        # An entry expires ``window`` after its last charge, when every timestamp in it has.
        self._tables = tuple(
            (TTLCache[str, tuple[float, ...]](max_keys, ttl=window, timer=clock), limit)
            for limit in (per_user, per_client)
        )

    def charge(self, username: str, client: str) -> Charge:
        """Count a login as failed until :meth:`refund`; :class:`TooManyFailures` (nothing
        counted) if the username or the client is at its limit."""
        with self._lock:
            now = self._clock()
            logs = []
            retry_after: float | None = None
            for (table, limit), key in zip(self._tables, (username, client), strict=True):
                log = tuple(t for t in table.get(key, ()) if t > now - self._window)
                if len(log) >= limit:
                    frees_at = log[len(log) - limit] + self._window
                    retry_after = max(retry_after or 0.0, frees_at - now)
                logs.append(log)
            if retry_after is not None:
                raise TooManyFailures(retry_after)
            for (table, _), key, log in zip(self._tables, (username, client), logs, strict=True):
                table[key] = (*log, now)
        return Charge(username, client, now)

    def refund(self, charge: Charge) -> None:
        """The password was right: take back this login's charge (and only it)."""
        with self._lock:
            for (table, _), key in zip(self._tables, (charge.username, charge.client), strict=True):
                log = list(table.get(key, ()))
                if charge.at in log:
                    log.remove(charge.at)
                    if log:
                        table[key] = tuple(log)
                    else:
                        del table[key]

    def __len__(self) -> int:
        """Keys tracked, both tables together."""
        with self._lock:
            return sum(len(table) for table, _ in self._tables)
