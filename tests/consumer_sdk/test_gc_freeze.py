"""gc_freeze_when_ready: gc.freeze() once, when the SDK first reports ready."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from consumer_sdk import ConsumerSettings, Revocast, _client
from consumer_sdk.testing import InMemorySource
from tests.consumer_sdk._helpers import settings


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    _client._frozen_in = None
    yield
    gc.unfreeze()
    _client._frozen_in = None


def test_off_by_default_nothing_is_frozen() -> None:
    source = InMemorySource()
    with Revocast(settings(), source=source) as rc:
        source.set_ready()
        assert rc.wait_until_ready(5)
    assert gc.get_freeze_count() == 0


def test_freezes_once_when_ready_and_not_before() -> None:
    source = InMemorySource()
    with Revocast(settings(gc_freeze_when_ready=True), source=source) as rc:
        assert not rc.wait_until_ready(0.05)
        assert gc.get_freeze_count() == 0
        source.set_ready()
        assert rc.wait_until_ready(5)
        frozen = gc.get_freeze_count()
        assert frozen > 0
        assert rc.wait_until_ready(5)
        assert gc.get_freeze_count() == frozen  # not frozen again


def test_from_env() -> None:
    env = {
        "REVOCAST_ALGORITHMS": "HS256",
        "REVOCAST_JWT_KEY": "s" * 32,
        "REVOCAST_ALLOW_UNSIGNED_EVENTS": "true",
        "REVOCAST_GC_FREEZE_WHEN_READY": "true",
    }
    assert ConsumerSettings.from_env(environ=env).gc_freeze_when_ready is True
