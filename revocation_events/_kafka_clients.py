"""kafka-python client construction shared by every Revocast component.

Works around two kafka-python 3.0 bugs: a refused connection leaks its socket and a failed
constructor (no broker) leaves its network client open; and ``allow_auto_create_topics`` is
not handed to the cluster metadata, so a misspelt topic would be auto-created with the
broker's (possibly short) default retention.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any, TypeVar

from kafka.net.compat import KafkaNetClient

from revocation_events._errors import RevocastError

__all__ = ["KafkaUnreachableError", "closing_on_failure", "require_reachable"]

T = TypeVar("T")


class KafkaUnreachableError(RevocastError):
    """No bootstrap server accepted a TCP connection."""


def require_reachable(config: dict[str, Any], timeout: float = 1.0) -> None:
    """Raise :class:`KafkaUnreachableError` unless a bootstrap server accepts TCP.

    Checked before building a kafka-python client: it fails fast, and kafka-python 3.0 leaks
    the socket of every refused connection attempt.
    """
    if config.get("proxy_url"):
        return
    servers = config["bootstrap_servers"]
    for server in servers:
        host, _, port = server.rpartition(":")
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except (OSError, ValueError):
            continue
        return
    raise KafkaUnreachableError(f"no Kafka broker reachable at {','.join(servers)}")


def closing_on_failure(factory: Callable[..., T], config: dict[str, Any]) -> T:
    """``factory(**config)`` for a kafka-python client, working around two kafka-python 3.0
    bugs: a failed constructor (no broker) leaves its network client open, and
    ``allow_auto_create_topics`` is ignored."""
    opened: list[KafkaNetClient] = []

    def net_client(**kwargs: Any) -> KafkaNetClient:
        client = KafkaNetClient(**kwargs)
        opened.append(client)
        # kafka-python 3.0.12 does not hand allow_auto_create_topics to the cluster metadata,
        # so every metadata request would let a broker auto-create a misspelt topic with
        # its default (possibly short) retention.
        client.cluster.config["allow_auto_create_topics"] = bool(
            config.get("allow_auto_create_topics", True)
        )
        return client

    try:
        return factory(**config, kafka_client=net_client)
    except BaseException:
        for client in opened:
            client.close()
        raise
