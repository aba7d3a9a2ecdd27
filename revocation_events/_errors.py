from __future__ import annotations

from typing import Literal

__all__ = ["MalformedEventError", "RevocastError", "SkipReason"]

SkipReason = Literal[
    "oversized",
    "not_json",
    "invalid",
    "unknown_type",
    "newer_schema",
    "unsigned",
    "unknown_key",
    "bad_signature",
]
"""Why a consumer skipped a record. Every skip is counted under exactly one of these."""


class RevocastError(Exception):
    """Base of Revocast's non-token errors (settings, Kafka, malformed events)."""


class MalformedEventError(RevocastError):
    """A record that is not a valid, authentic revocation event.

    ``reason`` is a stable machine-readable code for metrics; the message is for humans and
    never contains key material.
    """

    def __init__(self, reason: SkipReason, message: str) -> None:
        super().__init__(message)
        self.reason: SkipReason = reason
