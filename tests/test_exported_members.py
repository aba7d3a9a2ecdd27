"""Each package's public surface is exactly its sorted ``__all__``, and every name in it exists."""

from __future__ import annotations

import importlib

import pytest

PACKAGES = ["revocation_events", "producer", "consumer_sdk", "streams"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_every_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported, f"{name} has no __all__"
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", PACKAGES)
def test_no_private_module_leaks_into_the_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert not [n for n in module.__all__ if n.startswith("_")]
