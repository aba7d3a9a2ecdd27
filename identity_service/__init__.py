"""A reference identity service (FastAPI) that publishes every revocation through Revocast.

Copy it as a starting point: short-lived RS256 access tokens (``jti``, ``sid``, ``iat``,
``exp``, ``ver``, ``kid``), rotating refresh tokens with reuse detection, scrypt password
hashes, SQLite storage, a JWKS endpoint with key rotation and revocation.
"""

from identity_service._app import create_app
from identity_service._outbox import RevocationPublisher
from identity_service._passwords import (
    OWASP_SCRYPT,
    PasswordHasher,
    Scrypt,
    hash_password,
    verify_password,
)
from identity_service._settings import IdentitySettings

__all__ = [
    "OWASP_SCRYPT",
    "IdentitySettings",
    "PasswordHasher",
    "RevocationPublisher",
    "Scrypt",
    "create_app",
    "hash_password",
    "verify_password",
]
