"""Rebuild the revocation state from the log, as an SDK would, and summarise it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from consumer_sdk import ReplayStats, RevocationState, decode_and_apply
from consumer_sdk._kafka_source import replay_since
from consumer_sdk._settings import MAX_LEEWAY
from revocast.ops._reader import LogRange, read_range
from revocast.ops._settings import OpsSettings
from revocation_events import MalformedEventError

__all__ = ["ReplayReport", "replay_log"]


@dataclass
class ReplayReport:
    state: RevocationState
    stats: ReplayStats = field(default_factory=ReplayStats)
    records: int = 0
    oldest: datetime | None = None
    newest: datetime | None = None
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"records read: {self.records} in {self.seconds:.1f} s "
            f"({self.records / self.seconds if self.seconds else 0:,.0f}/s)",
            f"oldest event: {self.oldest.isoformat() if self.oldest else '-'}",
            f"newest event: {self.newest.isoformat() if self.newest else '-'}",
            "live rules by kind:",
        ]
        sizes = self.state.size_by_kind()
        lines += [f"  {kind:<20} {count}" for kind, count in sorted(sizes.items())] or ["  (none)"]
        lines.append("skipped records by reason:")
        skipped = sorted(self.stats.skipped.items())
        lines += [f"  {reason:<20} {count}" for reason, count in skipped] or ["  (none)"]
        return "\n".join(lines)


def replay_log(
    settings: OpsSettings,
    *,
    since: datetime | None = None,
    from_beginning: bool = False,
    clock: Callable[[], float] = time.time,
    on_range: Callable[[LogRange], None] = lambda _: None,
    on_record: Callable[[], None] = lambda: None,
) -> ReplayReport:
    """Replay ``settings.kafka.topic`` into a fresh state. Default start: where an SDK's
    replay starts (:func:`consumer_sdk._kafka_source.replay_since`)."""
    if from_beginning:
        since_ms = None
    elif since is not None:
        since_ms = int(since.timestamp() * 1000)
    else:
        # As an SDK with the largest leeway starts (a token it still accepts is reported).
        since_ms = int(replay_since(clock(), settings.max_token_lifetime, MAX_LEEWAY) * 1000)
    state = RevocationState(
        clock=clock,
        max_token_lifetime=settings.max_token_lifetime,
        version_claim=settings.version_claim,
    )
    report = ReplayReport(state=state)
    codec = settings.codec()
    started = time.monotonic()
    for record in read_range(
        settings.kafka, settings.kafka.topic, since_ms=since_ms, on_range=on_range
    ):
        report.records += 1
        on_record()
        try:
            event, changed = decode_and_apply(codec, state, record.value, record.headers or ())
        except MalformedEventError as exc:
            report.stats.skipped[exc.reason] += 1
            continue
        (report.stats.applied if changed else report.stats.unchanged)[event.type] += 1
        at = event.occurred_at.astimezone(UTC)
        report.oldest = at if report.oldest is None or at < report.oldest else report.oldest
        report.newest = at if report.newest is None or at > report.newest else report.newest
    report.seconds = time.monotonic() - started
    return report
