"""Public keys of a token issuer, fetched from its metadata document and cached.

The request path asks :meth:`KeySource.keys` for ``(kid, alg)``. Keys are refetched when older
than ``max_age`` and on an unknown ``kid`` (key rotation), but never more than once per
``min_refresh_interval``: a stream of tokens with made-up ``kid`` values cannot turn the
receiver into a load generator against the transmitter. Concurrent callers share one fetch;
no lock is held during I/O.

A failed fetch keeps the last good keys. So does a key set with no usable signing key
(``{"keys": []}``, or only encryption, symmetric or malformed keys), far more often a broken
key server than a deliberate withdrawal, which would otherwise make every SET fail until the
next refresh; but only for ``max_age`` after the first such answer, the longest any removed
key stays trusted. After that tokens are "retry later", never refused, so nothing is lost.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from receiver._errors import DeliveryUnavailable, SetRejected

__all__ = ["KeySource"]

log = logging.getLogger("receiver.keys")

_MAX_DOCUMENT_BYTES = 1024 * 1024
"""Metadata and key sets are a few KiB; a larger body is not buffered."""
_KTY_FOR_ALG_PREFIX = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class KeySource:
    """Keys of ``issuer``: from ``jwks_uri`` if given, else from the ``jwks_uri`` member of the
    JSON document at ``metadata_url`` (whose ``issuer`` must equal ``issuer``).

    ``on_refresh_failure`` is called, outside the lock, after each failed refresh with why:
    ``"unavailable"`` (no answer, or not a key set) or ``"no_usable_key"``."""

    def __init__(
        self,
        *,
        issuer: str,
        metadata_url: str | None,
        jwks_uri: str | None,
        client: httpx.Client,
        max_age: float = 3600.0,
        min_refresh_interval: float = 30.0,
        wait_timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_refresh_failure: Callable[[str], object] | None = None,
    ) -> None:
        if metadata_url is None and jwks_uri is None:
            raise ValueError("need metadata_url or jwks_uri")
        self._issuer = issuer
        self._metadata_url = metadata_url
        self._fixed_jwks_uri = jwks_uri
        self._client = client
        self._max_age = max_age
        self._min_interval = min_refresh_interval
        self._wait_timeout = wait_timeout
        self._clock = clock
        self._wall_clock = wall_clock
        self._fetched_wall = 0.0
        self._lock = threading.Lock()
        self._keys: dict[str, list[dict[str, Any]]] | None = None
        self._metadata: Mapping[str, Any] = {}
        self._fetched_at = 0.0
        self._last_attempt: float | None = None
        self._in_flight: threading.Event | None = None
        self._last_error = ""
        self._unusable_since: float | None = None
        """When a key set without a usable key first replaced a good one (monotonic)."""
        self._on_refresh_failure = on_refresh_failure

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The issuer's metadata document as last fetched (empty with a fixed ``jwks_uri``)."""
        return self._metadata

    def keys(
        self, kid: str | None, alg: str, *, issued_at: Callable[[], float | None] | None = None
    ) -> tuple[PyJWK, ...]:
        """The keys that may have signed a token with this header, usually one: a JWK set may
        give one ``kid`` to keys of different types (RFC 7517 4.5), and only those that can
        verify ``alg`` are returned. Raises :class:`SetRejected` (``invalid_key``) for an
        unknown ``kid`` or when none fits, :class:`DeliveryUnavailable` if no keys could be
        loaded.

        ``issued_at`` gives the token's (unverified) ``iat``, in seconds since the epoch; it
        is asked only for an unknown ``kid``. An unknown ``kid`` in a token issued after our
        keys were fetched, when they cannot be refetched yet, is
        :class:`DeliveryUnavailable`: the key may just be newer than our copy, and a
        permanent refusal would make the sender drop a genuine token.
        """
        keys = self._keys
        if keys is None or self._clock() - self._fetched_at > self._max_age:
            self._refresh(force=False)
            keys = self._keys
        found = _lookup(keys, kid)
        if not found and keys is not None:
            self._refresh(force=False)
            keys = self._keys
            found = _lookup(keys, kid)
        if keys is None:
            raise DeliveryUnavailable(f"no keys for {self._issuer!r} could be loaded")
        since = self._unusable_since
        if since is not None and self._clock() - since > self._max_age:
            raise DeliveryUnavailable(
                f"{self._issuer!r} has published no usable key for over {self._max_age:g}s; "
                "its earlier keys are no longer trusted"
            )
        if not found:
            iat = None if issued_at is None else issued_at()
            if iat is not None and iat > self._fetched_wall:
                raise DeliveryUnavailable(f"key id {kid!r} is not in the keys fetched so far")
            raise SetRejected("invalid_key", f"unknown key id {kid!r}")
        bound: list[PyJWK] = []
        refusals: list[SetRejected] = []
        for jwk in found:
            try:
                bound.append(_bind(jwk, alg))
            except SetRejected as exc:
                refusals.append(exc)
        if not bound:
            raise refusals[0]
        return tuple(bound)

    def refresh(self) -> None:
        """Fetch the keys now (at startup); raise :class:`DeliveryUnavailable` on failure."""
        if not self._refresh(force=True):
            raise DeliveryUnavailable(
                f"could not load keys for {self._issuer!r}: {self._last_error}"
            )

    def _refresh(self, *, force: bool) -> bool:
        with self._lock:
            waiting = self._in_flight
            if waiting is None:
                now = self._clock()
                if (
                    not force
                    and self._last_attempt is not None
                    and now - self._last_attempt < self._min_interval
                ):
                    return False
                self._last_attempt = now
                self._in_flight = done = threading.Event()
        if waiting is not None:
            waiting.wait(self._wait_timeout)
            return self._keys is not None
        failure: tuple[str, str] | None = None
        try:
            metadata, keys = self._fetch()
        except DeliveryUnavailable as exc:
            failure = ("unavailable", str(exc))
        else:
            usable = any(_usable(k) for same_kid in keys.values() for k in same_kid)
            with self._lock:
                self._metadata = metadata
                if usable:
                    self._keys, self._fetched_at = keys, self._clock()
                    self._fetched_wall = self._wall_clock()
                    self._unusable_since = None
                else:
                    if self._unusable_since is None and self._keys is not None:
                        self._unusable_since = self._clock()
                    failure = ("no_usable_key", "the key set has no usable signing key")
        finally:
            with self._lock:
                self._in_flight = None
            done.set()
        if failure is None:
            return True
        reason, message = failure
        kept = "keeping the last good keys" if self._keys is not None else "no keys yet"
        log.warning("key refresh for %s failed (%s): %s", self._issuer, kept, message)
        self._last_error = message
        if self._on_refresh_failure is not None:
            self._on_refresh_failure(reason)
        return False

    def _fetch(self) -> tuple[Mapping[str, Any], dict[str, list[dict[str, Any]]]]:
        metadata: Mapping[str, Any] = {}
        jwks_uri = self._fixed_jwks_uri
        if jwks_uri is None:
            assert self._metadata_url is not None
            metadata = self._get_json(self._metadata_url)
            if metadata.get("issuer") != self._issuer:
                raise DeliveryUnavailable(
                    f"metadata at {self._metadata_url} names issuer "
                    f"{str(metadata.get('issuer'))[:200]!r}, expected {self._issuer!r}"
                )
            jwks_uri = metadata.get("jwks_uri")
            # Never weaker than the document naming it: an http jwks_uri in an https document
            # would hand the keys (and so every SET) to anyone on the network path.
            secure = self._metadata_url.lower().startswith("https://")
            schemes = ("https://",) if secure else ("https://", "http://")
            if not isinstance(jwks_uri, str) or not jwks_uri.lower().startswith(schemes):
                raise DeliveryUnavailable(
                    f"metadata at {self._metadata_url} has no {'https ' if secure else ''}jwks_uri"
                )
        document = self._get_json(jwks_uri)
        raw_keys = document.get("keys")
        if not isinstance(raw_keys, list):
            raise DeliveryUnavailable(f"{jwks_uri} is not a JWK set")
        keys: dict[str, list[dict[str, Any]]] = {}
        for k in raw_keys:
            if isinstance(k, dict):
                keys.setdefault(str(k.get("kid", "")), []).append(k)
        return metadata, keys

    def _get_json(self, url: str) -> Mapping[str, Any]:
        # The client's timeout bounds each read; a server dripping bytes just under it would
        # hold the refresh (and every caller waiting on it) for as long as it likes.
        deadline = self._clock() + self._wait_timeout
        try:
            with self._client.stream("GET", url, headers={"Accept": "application/json"}) as r:
                r.raise_for_status()
                body = bytearray()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_DOCUMENT_BYTES:
                        raise DeliveryUnavailable(
                            f"GET {url}: document larger than {_MAX_DOCUMENT_BYTES} bytes"
                        )
                    if self._clock() > deadline:
                        raise DeliveryUnavailable(
                            f"GET {url}: not read within {self._wait_timeout:g}s"
                        )
            document = json.loads(body)
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            raise DeliveryUnavailable(f"GET {url} failed: {type(exc).__name__}") from exc
        if not isinstance(document, dict):
            raise DeliveryUnavailable(f"GET {url} did not return a JSON object")
        return document


def _lookup(keys: dict[str, list[dict[str, Any]]] | None, kid: str | None) -> list[dict[str, Any]]:
    if keys is None:
        return []
    if kid is None:
        # Only unambiguous: a kid-less token is accepted when the set has exactly one key.
        every = [k for same_kid in keys.values() for k in same_kid]
        return every if len(every) == 1 else []
    return keys.get(kid, [])


def _usable(jwk: Mapping[str, Any]) -> bool:
    """Could this key verify some token (the token's ``alg`` aside)?"""
    try:
        _check_signing_key(jwk)
        PyJWK(dict(jwk))
    except (SetRejected, PyJWTError, ValueError, KeyError, TypeError):
        return False
    return True


def _check_signing_key(jwk: Mapping[str, Any]) -> None:
    kty = jwk.get("kty")
    if kty not in {"RSA", "EC", "OKP"}:
        raise SetRejected("invalid_key", f"key type {str(kty)[:16]!r} is not accepted")
    ops = jwk.get("key_ops")
    if jwk.get("use", "sig") != "sig" or (
        ops is not None and (not isinstance(ops, list) or "verify" not in ops)
    ):
        # RFC 7517 4.2/4.3: a key set aside for encryption (or only for signing, which a
        # public key cannot do) is not used to verify, whichever member says so.
        raise SetRejected("invalid_key", "key is not a signing key")


def _bind(jwk: Mapping[str, Any], alg: str) -> PyJWK:
    """Bind a JWK to the token's algorithm, refusing every mismatch (alg confusion)."""
    _check_signing_key(jwk)
    kty = jwk.get("kty")
    if "alg" in jwk and jwk["alg"] != alg:
        raise SetRejected("invalid_key", f"key is for {str(jwk['alg'])[:16]}, token uses {alg}")
    if _KTY_FOR_ALG_PREFIX.get(alg[:2]) != kty:
        raise SetRejected("invalid_key", f"a {kty} key cannot verify {alg}")
    try:
        return PyJWK(dict(jwk), algorithm=alg)
    except (PyJWTError, ValueError, KeyError, TypeError) as exc:
        raise SetRejected("invalid_key", f"unusable key: {type(exc).__name__}") from None
