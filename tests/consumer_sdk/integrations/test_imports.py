"""Importing the SDK, or a framework-neutral adapter, never imports a web framework."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("starlette", "fastapi", "flask", "werkzeug", "django")
NEUTRAL = (
    "consumer_sdk",
    "consumer_sdk.integrations",
    "consumer_sdk.integrations.asgi",
    "consumer_sdk.integrations.wsgi",
    "consumer_sdk.integrations.health",
)


def test_sdk_and_neutral_adapters_import_no_web_framework() -> None:
    probe = (
        "import importlib, sys\n"
        f"for module in {NEUTRAL!r}:\n"
        "    importlib.import_module(module)\n"
        f"    loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "    print(module, loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", probe], capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines() == [f"{module} []" for module in NEUTRAL]
