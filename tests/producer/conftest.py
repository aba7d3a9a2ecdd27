from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from producer import Publisher, PublisherSettings
from revocation_events import KafkaSettings, SigningKey
from tests.producer._support import UNREACHABLE, new_signing_key

MakeSettings = Callable[..., PublisherSettings]
FIXED_NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture
def signing_key() -> SigningKey:
    return new_signing_key()


@pytest.fixture
def make_settings(signing_key: SigningKey, tmp_path: Path) -> MakeSettings:
    """PublisherSettings for a test: its own outbox file, short timeouts, the test key."""

    def make(
        *, bootstrap: str = UNREACHABLE, topic: str = "unused", **overrides: Any
    ) -> PublisherSettings:
        values: dict[str, Any] = {
            "issuer": "identity-test",
            "kafka": KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic),
            "signing_key": signing_key,
            "outbox_path": tmp_path / "outbox.sqlite3",
            "ack_timeout": 10.0,
            "delivery_timeout": 10.0,
            "max_block": 5.0,
        }
        values.update(overrides)
        return PublisherSettings(**values)

    return make


@pytest.fixture
def offline_publisher(make_settings: MakeSettings) -> Iterator[Publisher]:
    """An outbox publisher whose broker is unreachable: events stay in the outbox."""
    publisher = Publisher(make_settings(ack_timeout=0.01, max_block=0.5), clock=lambda: FIXED_NOW)
    yield publisher
    publisher.close()
