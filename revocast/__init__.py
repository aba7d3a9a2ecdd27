"""Revocast: operator tooling (the ``revocast`` CLI and the local Kafka broker for development)."""

__all__: list[str] = []
