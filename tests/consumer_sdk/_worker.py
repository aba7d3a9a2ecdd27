"""A verifying service in its own process (started with the ``spawn`` method by Kafka tests)."""

from __future__ import annotations

import threading
import time
from multiprocessing.queues import Queue
from typing import Any

from consumer_sdk import Revocast, TokenRevokedError
from revocation_events import Event, KafkaSettings
from tests.consumer_sdk._helpers import settings


def verifying_service(bootstrap: str, topic: str, target: str, other: str, out: Queue[Any]) -> None:
    """Report ("ready", ok), then wait for the first applied event and report
    ("revoked", wall time) once ``target`` is refused, and whether ``other`` still passes."""
    applied = threading.Event()
    rc = Revocast(settings(kafka=KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)))

    def on_event(event: Event) -> None:
        applied.set()

    rc.add_revocation_listener(on_event)
    try:
        ready = rc.wait_until_ready(30)
        out.put(("ready", ready, _refused(rc, target)))
        if not applied.is_set():
            applied.wait(30)
        out.put(("revoked", time.time() if _refused(rc, target) else None, not _refused(rc, other)))
    finally:
        rc.close()


def _refused(rc: Revocast, token: str) -> bool:
    try:
        rc.verify(token)
    except TokenRevokedError:
        return True
    return False
