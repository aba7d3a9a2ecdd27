"""kafka-python client construction shared by every Revocast component.

Works around kafka-python 3.0 bugs: a refused connection leaks its socket and a failed
constructor (no broker) leaves its network client open; ``allow_auto_create_topics`` is
not handed to the cluster metadata, so a misspelt topic would be auto-created with the
broker's (possibly short) default retention; and a producer's ``close(timeout)`` that cannot
flush in time raises without closing anything. It also lets a consumer owned by one thread
drive its own network I/O instead of handing every request to kafka-python's I/O thread.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

from kafka.errors import KafkaError
from kafka.net.compat import KafkaNetClient

from revocation_events._errors import RevocastError

__all__ = [
    "KafkaUnreachableError",
    "close_producer",
    "closing_on_failure",
    "drive_io_inline",
    "require_reachable",
]

T = TypeVar("T")
_log = logging.getLogger("revocation_events")


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


def close_producer(producer: Any, timeout: float) -> None:
    """Close a kafka-python producer within about ``timeout`` s, dropping what is unsent.

    kafka-python 3.0's ``KafkaProducer.close(timeout)`` flushes first and raises
    ``KafkaTimeoutError`` when a batch is still pending, *before* it stops its network thread
    or marks itself closed. The producer then stays open: the thread keeps retrying (and may
    deliver the stale batch after a fresh producer has re-sent the same records), and
    ``__del__`` repeats the flush and raises from the garbage collector. On that error, stop
    the thread without sending (``force_close`` fails every pending batch), then close.
    Never raises :class:`KafkaError`.
    """
    try:
        producer.close(timeout=timeout)
        return
    except KafkaError as exc:
        _log.warning(
            "Kafka producer not flushed within %.1fs (%s): dropping its sends", timeout, exc
        )
    sender = producer._sender  # kafka-python 3.0 has no public close-without-flush
    sender.force_close()
    sender.join(max(1.0, timeout))
    try:
        producer.close(timeout=0)
    except KafkaError as exc:
        _log.warning("error closing the Kafka producer: %s", exc)


def drive_io_inline(consumer: Any) -> bool:
    """Stop ``consumer``'s kafka-python I/O thread, so that each call made on the consumer
    drives the network loop itself (kafka-python 3.0's documented fallback when no I/O thread
    runs); return whether it did.

    kafka-python 3.0 starts one I/O thread per consumer and hands it every request: a fetch
    round trip then costs several cross-thread wake-ups and GIL hand-offs (~15 % of a tailing
    consumer's CPU per fetch, and the two threads contend for the GIL while a backlog is
    applied). Only for a consumer that one thread owns and polls continuously: nothing runs
    kafka-python's background tasks (metadata refresh, offset resets) between calls.
    """
    net = getattr(consumer, "_net", None)
    if net is None or not callable(getattr(net, "stop", None)) or not hasattr(net, "_io_thread"):
        _log.debug("kafka-python internals differ: keeping its I/O thread")
        return False
    net.stop()
    return net._io_thread is None
