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

from identity_service._store import Store

__all__ = ["KeyRing"]

ALGORITHM = "RS256"


class KeyRing:
    """Signs with the one active key; publishes every non-revoked public key in the JWKS."""

    def __init__(self, store: Store, clock: Callable[[], float]) -> None:
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._private: dict[str, rsa.RSAPrivateKey] = {}
        if not any(k.active for k in store.signing_keys()):
            self.rotate()

    def _load(self, kid: str, pem: str) -> rsa.RSAPrivateKey:
        key = self._private.get(kid)
        if key is None:
            loaded = serialization.load_pem_private_key(pem.encode(), password=None)
            assert isinstance(loaded, rsa.RSAPrivateKey)
            key = self._private[kid] = loaded
        return key

    def rotate(self) -> str:
        """Make a new key the active signer; older keys stay in the JWKS until revoked."""
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        kid = f"k-{uuid.uuid4().hex[:12]}"
        with self._lock:
            self._store.add_key(kid, pem, self._clock())
            self._private[kid] = private
        return kid

    def revoke(self, kid: str) -> bool:
        """Drop ``kid`` from the JWKS; if it was the active key, a new one takes over."""
        with self._lock:
            found = self._store.revoke_key(kid)
            self._private.pop(kid, None)
        if found and not any(k.active for k in self._store.signing_keys()):
            self.rotate()
        return found

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
