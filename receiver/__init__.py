"""Revocast's standards bridge: OpenID Shared Signals (SSF 1.0, CAEP, RISC) Security Event
Tokens and OIDC back-channel logout tokens, republished as Revocast events that reach every
instance.

    with Publisher(PublisherSettings.from_env()) as publisher:
        receiver = Receiver(settings=ReceiverSettings.from_env(), sink=publisher,
                            max_token_lifetime=timedelta(hours=1))
        app = create_app(receiver)          # serve with uvicorn

See receiver/README.md for the mapping table and the settings.
"""

from receiver._app import create_app
from receiver._errors import DeliveryUnavailable, ErrorCode, ReceiverError, SetRejected
from receiver._poller import Poller
from receiver._receiver import Outcome, Receipt, Receiver, StreamStatus
from receiver._settings import (
    LogoutSettings,
    MappingPolicy,
    PollSettings,
    ReceiverSettings,
    TransmitterSettings,
)
from receiver._sink import EventSink, RecordingSink

__all__ = [
    "DeliveryUnavailable",
    "ErrorCode",
    "EventSink",
    "LogoutSettings",
    "MappingPolicy",
    "Outcome",
    "PollSettings",
    "Poller",
    "Receipt",
    "Receiver",
    "ReceiverError",
    "ReceiverSettings",
    "RecordingSink",
    "SetRejected",
    "StreamStatus",
    "TransmitterSettings",
    "create_app",
]
