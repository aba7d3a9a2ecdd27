"""Errors of the standards bridge, grouped by how a transmitter should react.

* :class:`SetRejected`: the SET itself is bad. Permanent: push answers 400 with the RFC 8935
  ``err`` code, poll reports it in ``setErrs``. Redelivering the same SET cannot succeed.
* :class:`DeliveryUnavailable`: the SET may be fine but we could not finish (key server or
  Kafka unreachable). Transient: push answers 503, poll neither acknowledges nor reports it,
  so the transmitter delivers it again.
"""

from __future__ import annotations

from typing import Literal

from revocation_events import RevocastError

__all__ = ["DeliveryUnavailable", "ErrorCode", "ReceiverError", "SetRejected"]

ErrorCode = Literal[
    "invalid_request",
    "invalid_key",
    "invalid_issuer",
    "invalid_audience",
    "authentication_failed",
    "access_denied",
]
"""The SET error codes registered by RFC 8935 section 7.1."""


class ReceiverError(RevocastError):
    """Base of the receiver's errors."""


class SetRejected(ReceiverError):
    """A token that will never be accepted. ``code`` is the RFC 8935 ``err`` value and the
    message its ``description``; neither contains token contents beyond claim names."""

    def __init__(self, code: ErrorCode, description: str) -> None:
        super().__init__(description)
        self.code: ErrorCode = code
        self.description = description


class DeliveryUnavailable(ReceiverError):
    """The token could not be processed now; delivering it again later may succeed."""
