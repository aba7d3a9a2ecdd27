"""Reading a topic's partitions from a start point to the end offsets seen at the start."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from revocation_events import (
    KafkaSettings,
    KafkaUnreachableError,
    RevocastError,
    closing_on_failure,
    require_reachable,
)

__all__ = ["LogRange", "OpsKafkaError", "read_range"]


class OpsKafkaError(RevocastError):
    """Kafka could not be reached or the topic is missing; the message is one line."""


@dataclass(frozen=True, slots=True)
class LogRange:
    starts: dict[int, int]
    ends: dict[int, int]

    @property
    def total(self) -> int:
        return sum(max(0, self.ends[p] - self.starts[p]) for p in self.ends)


def _consumer(kafka: KafkaSettings) -> Any:
    config = {
        **kafka.client_config(KafkaConsumer.DEFAULT_CONFIG),
        "group_id": None,
        "enable_auto_commit": False,
        "allow_auto_create_topics": False,
    }
    try:
        require_reachable(config)
        return closing_on_failure(KafkaConsumer, config)
    except KafkaUnreachableError as exc:
        raise OpsKafkaError(f"cannot reach Kafka at {','.join(kafka.bootstrap_servers)}") from exc
    except KafkaError as exc:
        raise OpsKafkaError(
            f"cannot reach Kafka at {','.join(kafka.bootstrap_servers)}: {exc}"
        ) from exc


def read_range(
    kafka: KafkaSettings,
    topic: str,
    *,
    since_ms: int | None,
    on_range: Callable[[LogRange], None] = lambda _: None,
) -> Iterator[Any]:
    """Yield every record of ``topic`` from ``since_ms`` (``None``: the beginning) up to the
    end offsets at the start, across all partitions."""
    consumer = _consumer(kafka)
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise OpsKafkaError(f"topic {topic!r} does not exist")
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        timeout = kafka.request_timeout_ms
        ends = consumer.end_offsets(tps, timeout_ms=timeout)
        if since_ms is None:
            starts = consumer.beginning_offsets(tps, timeout_ms=timeout)
        else:
            found = consumer.offsets_for_times(dict.fromkeys(tps, since_ms), timeout_ms=timeout)
            starts = {tp: (found[tp].offset if found.get(tp) else ends[tp]) for tp in tps}
        for tp in tps:
            consumer.seek(tp, starts[tp])
        on_range(
            LogRange(
                {tp.partition: starts[tp] for tp in tps}, {tp.partition: ends[tp] for tp in tps}
            )
        )
        remaining = {tp for tp in tps if starts[tp] < ends[tp]}
        while remaining:
            batch = consumer.poll(timeout_ms=1000)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < ends[tp]:
                        yield record
            for tp in list(remaining):
                if consumer.position(tp, timeout_ms=timeout) >= ends[tp]:
                    remaining.discard(tp)
    except KafkaError as exc:
        raise OpsKafkaError(f"Kafka: {type(exc).__name__}: {exc}") from exc
    finally:
        consumer.close()
