from __future__ import annotations

__all__ = ["CommandError"]


class CommandError(Exception):
    """A failure the user can act on; printed as one line, no traceback."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code
