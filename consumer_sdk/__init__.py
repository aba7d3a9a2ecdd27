"""Revocast consumer SDK: verify JWTs locally against a replicated revocation state.

from consumer_sdk import ConsumerSettings, Revocast

rc = Revocast(settings)
rc.wait_until_ready(timeout=10)
claims = rc.verify(token)   # raises jwt.InvalidTokenError subclasses
"""

from consumer_sdk._client import Revocast
from consumer_sdk._errors import (
    RevocastTokenError,
    RevokedBy,
    SourceError,
    StateUnavailableError,
    TokenRevokedError,
)
from consumer_sdk._replay import ReplayStats, decode_and_apply, replay
from consumer_sdk._settings import ConsumerSettings, FailurePolicy
from consumer_sdk._source import DataSource, UpdateSink
from consumer_sdk._state import RevocationState
from consumer_sdk._status import DataSourceState, SourceErrorKind, SourceStatus

__all__ = [
    "ConsumerSettings",
    "DataSource",
    "DataSourceState",
    "FailurePolicy",
    "ReplayStats",
    "Revocast",
    "RevocastTokenError",
    "RevocationState",
    "RevokedBy",
    "SourceError",
    "SourceErrorKind",
    "SourceStatus",
    "StateUnavailableError",
    "TokenRevokedError",
    "UpdateSink",
    "decode_and_apply",
    "replay",
]
