"""The figures quoted in docs/reliability.md, as measured by the tests that prove them.

Each test calls :func:`record_figures` with what it counted (events sent / applied / lost,
records fuzzed / crashes, attacks tried / accepted). The line is printed (``pytest -s``) and,
when ``REVOCAST_FIGURES`` names a file, appended to it as one JSON object per line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["record_figures"]


def record_figures(case: str, **figures: int | float | str) -> None:
    """Print and optionally persist one case's figures."""
    line = json.dumps({"case": case, **figures}, sort_keys=True)
    print(f"FIGURES {line}")
    target = os.environ.get("REVOCAST_FIGURES")
    if target:
        with Path(target).open("a", encoding="utf-8") as out:
            out.write(line + "\n")
