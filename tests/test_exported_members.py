"""Each package's public surface is exactly its sorted ``__all__``: every name in it exists,
is documented and comes from a package that ships ``py.typed``; no module leaks into it."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import types
from pathlib import Path

import pytest

import consumer_sdk.integrations

PACKAGES = ["revocation_events", "producer", "consumer_sdk", "streams", "receiver"]
PUBLIC_MODULES = [
    *PACKAGES,
    "consumer_sdk.testing",
    *(
        f"consumer_sdk.integrations.{m.name}"
        for m in pkgutil.iter_modules(consumer_sdk.integrations.__path__)
        if not m.name.startswith("_")
    ),
]


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_all_is_sorted_and_every_name_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported, f"{name} has no __all__"
    assert exported == sorted(exported, key=lambda n: (not n.isupper(), n))
    missing = [n for n in exported if not hasattr(module, n)]
    assert missing == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_no_private_module_leaks_into_the_public_surface(name: str) -> None:
    module = importlib.import_module(name)
    assert not [n for n in module.__all__ if n.startswith("_")]
    modules = [n for n in module.__all__ if isinstance(getattr(module, n), types.ModuleType)]
    assert modules == []


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_exported_class_and_function_has_a_docstring(name: str) -> None:
    module = importlib.import_module(name)
    undocumented = [
        n
        for n in module.__all__
        if (inspect.isclass(obj := getattr(module, n)) or inspect.isfunction(obj))
        and not _own_docstring(obj)
    ]
    assert undocumented == []


def _own_docstring(obj: type | types.FunctionType) -> bool:
    """Whether ``obj`` has a docstring of its own: not inherited (``inspect.getdoc`` would
    return Enum's), not the signature a dataclass writes when there is none."""
    doc = (obj.__doc__ or "").strip()
    return bool(doc) and not (dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("))


@pytest.mark.parametrize("name", PACKAGES)
def test_every_package_ships_py_typed(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__file__ is not None
    assert (Path(module.__file__).parent / "py.typed").is_file()
