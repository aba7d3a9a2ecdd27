from __future__ import annotations

import argparse

__all__ = ["CommandError", "port"]


class CommandError(Exception):
    """A failure the user can act on; printed as one line, no traceback."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def port(text: str) -> int:
    """An argparse ``type``: a TCP port, 0-65535 (a larger one reached the socket's ``bind``
    as an ``OverflowError`` traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is outside 0-65535")
    return value
