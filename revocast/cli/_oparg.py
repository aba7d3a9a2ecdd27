"""What the operator commands share: settings from the environment, ``--since`` parsing and
the progress bar over a log range."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from revocast.cli._common import CommandError

if TYPE_CHECKING:
    from revocast.ops import LogRange, OpsSettings

__all__ = ["Progress", "ops_settings", "parse_time", "progress"]


def ops_settings() -> OpsSettings:
    from revocast.ops import OpsSettings
    from revocation_events import SettingsError

    try:
        return OpsSettings.from_env()
    except SettingsError as exc:
        raise CommandError(str(exc)) from exc


def parse_time(text: str) -> datetime:
    """``--since``: ISO-8601 with a timezone, or epoch seconds."""
    try:
        return datetime.fromtimestamp(float(text), UTC)
    except (ValueError, OverflowError, OSError):
        pass
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since: not a time: {text!r} (ISO-8601 or epoch seconds)") from None
    if parsed.tzinfo is None:
        raise CommandError(f"--since: {text!r} has no timezone (add Z or +00:00)")
    return parsed


@dataclass
class Progress:
    """``on_range``/``on_record`` callbacks for :func:`revocast.ops.read_range` users."""

    desc: str
    enabled: bool
    _bar: Any = field(default=None, repr=False)

    def on_range(self, log_range: LogRange) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=log_range.total,
            unit="ev",
            unit_scale=True,
            file=sys.stderr,
            disable=not self.enabled,
            desc=self.desc,
        )

    def on_record(self) -> None:
        if self._bar is not None:
            self._bar.update()


@contextmanager
def progress(desc: str, *, enabled: bool, kafka_exit_code: int = 1) -> Iterator[Progress]:
    """A progress bar (events/s, ETA) on a terminal; Kafka errors become one-line errors
    exiting ``kafka_exit_code``."""
    from revocast.ops import OpsKafkaError

    bar = Progress(desc, enabled=enabled and sys.stderr.isatty())
    try:
        yield bar
    except OpsKafkaError as exc:
        raise CommandError(str(exc), exit_code=kafka_exit_code) from exc
    finally:
        if bar._bar is not None:
            bar._bar.close()
