"""The longest token lifetime as the operator commands read it (a module of its own, so that a
command importing it does not import every operator module)."""

from __future__ import annotations

from collections.abc import Mapping

from revocation_events import SettingsError, env_float

__all__ = ["check_token_lifetime", "env_token_lifetime"]

_DEFAULT_LIFETIME = 3600.0
_MAX_SECONDS = 100 * 365 * 86_400.0  # as the SDK and the worker bound it


def env_token_lifetime(env: Mapping[str, str], prefix: str = "REVOCAST_") -> float:
    """``{prefix}MAX_TOKEN_LIFETIME`` in seconds (default 1 h), checked as the SDK checks it:
    a :class:`SettingsError` naming the variable unless finite, > 0 and at most 100 years. A
    ``nan`` or a negative value would make every retention and replay-window check pass."""
    name = f"{prefix}MAX_TOKEN_LIFETIME"
    value = env_float(env, name)
    if value is None:
        return _DEFAULT_LIFETIME
    check_token_lifetime(name, value)
    return value


def check_token_lifetime(name: str, value: float) -> None:
    if not (0 < value <= _MAX_SECONDS):  # also refuses nan
        raise SettingsError(f"{name} must be > 0 and at most 100 years of seconds, got {value}")
