"""The identity service's JWT signing keys (RS256), their JWKS, rotation and revocation."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from identity_service._revocations import Pending
from identity_service._store import SigningKeyRow, Store

__all__ = ["KeyRing"]

ALGORITHM = "RS256"


class KeyRing:
    """Signs with the active key; the JWKS also publishes the *next* key ahead of its use.

    Services cache the JWKS, so a key must be published before it signs anything: rotating
    (or revoking the active key) switches to the pre-published next key, which every service
    already knows, and publishes a new next key. Old keys stay in the JWKS until revoked.
    """

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        with self._lock:
            if self._next() is None:
                self._add_key()
            if not any(k.active for k in store.signing_keys()):
                self._promote_next()

    def _load(self, kid: str, pem: str) -> rsa.RSAPrivateKey:
        key = self._private.get(kid)
        if key is None:
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            key = self._private[kid] = loaded
        return key

    def _add_key(self) -> str:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        kid = f"k-{uuid.uuid4().hex[:12]}"
        self._store.add_key(kid, pem, self._clock())
        self._private[kid] = private
        return kid

    def _next(self) -> SigningKeyRow | None:
        """The newest published key that has never signed (created after the active one)."""
        keys = self._store.signing_keys()
        active_index = max((i for i, k in enumerate(keys) if k.active), default=-1)
        pending = [k for k in keys[active_index + 1 :] if not k.revoked]
        return pending[0] if pending else None

    def _promote_next(self) -> str:
        nxt = self._next()
        kid = nxt.kid if nxt is not None else self._add_key()
        self._store.activate_key(kid)
        self._add_key()
        return kid

    def rotate(self) -> str:
        """Sign with the pre-published next key from now on; publish a new next key."""
        with self._lock:
            return self._promote_next()

    def revoke(self, kid: str, *, reason: str) -> Pending | None:
        """Drop ``kid`` from the JWKS; if it was the active key, the next key takes over.
        Returns the key revocation the store now owes the services, None if ``kid`` is unknown."""
        with self._lock:
            was_active = any(k.kid == kid and k.active for k in self._store.signing_keys())
            owed = self._store.revoke_key(kid, reason=reason)
            self._private.pop(kid, None)
            if owed is not None and was_active:
                self._promote_next()
            elif owed is not None and self._next() is None:
                self._add_key()
        return owed

    def sign(self, claims: dict[str, Any]) -> str:
        active = next(k for k in self._store.signing_keys() if k.active)
        key = self._load(active.kid, active.private_pem)
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": active.kid})

    def public_keys(self) -> dict[str, rsa.RSAPublicKey]:
        return {
            k.kid: self._load(k.kid, k.private_pem).public_key()
            for k in self._store.signing_keys()
            if not k.revoked
        }

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, public in self.public_keys().items():
            jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
            jwk.update({"kid": kid, "alg": ALGORITHM, "use": "sig"})
            keys.append(jwk)
        return {"keys": keys}
