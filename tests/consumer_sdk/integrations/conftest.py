"""Fixtures shared by the adapter tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.consumer_sdk.integrations._cases import Harness, new_harness


@pytest.fixture
def harness() -> Iterator[Harness]:
    """An SDK fed by an in-memory source on a fake clock, not caught up yet (INITIALIZING)."""
    h = new_harness()
    try:
        yield h
    finally:
        h.revocast.close()


@pytest.fixture
def ready(harness: Harness) -> Harness:
    """The same harness, its source caught up (status VALID)."""
    harness.source.set_ready()
    return harness
