"""Shared fixtures. The Kafka broker fixtures live in tests/_kafka_fixtures.py."""

pytest_plugins = ["tests._kafka_fixtures"]
