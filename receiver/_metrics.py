"""Counters of received tokens by event type and outcome, and of failed key refreshes,
rendered in the Prometheus text format (no dependency on prometheus-client, no global
registry)."""

from __future__ import annotations

import threading
from collections import Counter

__all__ = ["Metrics"]

_MAX_EVENT_TYPES = 64


class Metrics:
    """``received[(event_type, outcome)]``. Event types are chosen by the transmitter, so at
    most 64 distinct values are kept as labels; the rest are counted as ``other``.

    ``key_refresh_failures[(source, reason)]``: ``source`` is ``set`` or ``logout``,
    ``reason`` ``unavailable`` (fetch failed) or ``no_usable_key`` (an empty key set)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: Counter[tuple[str, str]] = Counter()
        self._types: set[str] = set()
        self._key_failures: Counter[tuple[str, str]] = Counter()

    def count(self, event_type: str, outcome: str) -> None:
        with self._lock:
            if event_type not in self._types:
                if len(self._types) >= _MAX_EVENT_TYPES:
                    event_type = "other"
                self._types.add(event_type)
            self._received[(event_type, outcome)] += 1

    def count_key_refresh_failure(self, source: str, reason: str) -> None:
        with self._lock:
            self._key_failures[(source, reason)] += 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._received)

    def key_refresh_failures(self) -> dict[tuple[str, str], int]:
        with self._lock:
            return dict(self._key_failures)

    def unknown_event_types(self) -> dict[str, int]:
        return {t: n for (t, o), n in self.snapshot().items() if o == "ignored:unknown_event_type"}

    def render(self) -> str:
        lines = [
            "# HELP revocast_receiver_tokens_total Tokens received, by event type and outcome.",
            "# TYPE revocast_receiver_tokens_total counter",
        ]
        for (event_type, outcome), n in sorted(self.snapshot().items()):
            lines.append(
                "revocast_receiver_tokens_total"
                f'{{event_type="{_escape(event_type)}",outcome="{_escape(outcome)}"}} {n}'
            )
        lines += [
            "# HELP revocast_receiver_key_refresh_failures_total Key refreshes that kept the "
            "last good keys, by source and reason.",
            "# TYPE revocast_receiver_key_refresh_failures_total counter",
        ]
        for (source, reason), n in sorted(self.key_refresh_failures().items()):
            lines.append(
                "revocast_receiver_key_refresh_failures_total"
                f'{{source="{_escape(source)}",reason="{_escape(reason)}"}} {n}'
            )
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
