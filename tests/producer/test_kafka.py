from __future__ import annotations

import time

import pytest

from producer import PublishError
from producer._kafka import producer_config, require_reachable
from tests.producer._support import UNREACHABLE
from tests.producer.conftest import MakeSettings


def test_producer_is_idempotent_with_acks_all_and_bounded_waits(
    make_settings: MakeSettings,
) -> None:
    config = producer_config(make_settings(delivery_timeout=7, max_block=2))
    assert config["acks"] == "all"
    assert config["enable_idempotence"] is True
    assert config["delivery_timeout_ms"] == 7000
    assert config["max_block_ms"] == config["bootstrap_timeout_ms"] == 2000
    # kafka-python requires delivery_timeout_ms >= linger_ms + request_timeout_ms.
    assert config["request_timeout_ms"] + config["linger_ms"] <= config["delivery_timeout_ms"]


def test_passthrough_options_reach_the_producer(make_settings: MakeSettings) -> None:
    config = producer_config(make_settings(producer_options={"compression_type": "gzip"}))
    assert config["compression_type"] == "gzip"
    assert config["acks"] == "all"


def test_unreachable_bootstrap_fails_fast() -> None:
    started = time.monotonic()
    with pytest.raises(PublishError, match="no Kafka broker reachable"):
        require_reachable({"bootstrap_servers": [UNREACHABLE]})
    assert time.monotonic() - started < 2.0
