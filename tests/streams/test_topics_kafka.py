"""On the session's single broker, the topics the worker creates under auto replication get
1 replica and ``min.insync.replicas=1`` set on the topic itself."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient
from kafka.admin import ConfigResource

from revocation_events import KafkaSettings
from streams import StreamsSettings
from streams._topics import prepare_topics
from tests._kafka_fixtures import MakeTopic
from tests.streams._worker import app_id, delete_worker_topics


@pytest.mark.kafka
def test_the_state_topic_created_under_auto_replication_has_one_replica_and_min_insync_one(
    kafka_bootstrap: str, make_topic: MakeTopic
) -> None:
    log_topic = make_topic(partitions=2)
    settings = StreamsSettings(
        kafka=KafkaSettings(bootstrap_servers=(kafka_bootstrap,), topic=log_topic),
        app_id=app_id(log_topic),
        allow_unsigned=True,
    )
    assert settings.replication_factor is None
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap, client_id="revocast-tests")
    try:
        assert len(admin.describe_cluster()["brokers"]) == 1, "needs a single-broker cluster"
        resolved, partitions = prepare_topics(settings)
        (meta,) = admin.describe_topics([settings.state_topic])
        # Only settings made on the topic itself, not the broker's defaults.
        described = admin.describe_configs(
            [ConfigResource("TOPIC", settings.state_topic, ["min.insync.replicas"])]
        )
    finally:
        admin.close()
        delete_worker_topics(kafka_bootstrap, log_topic)
    assert (resolved.replication_factor, partitions) == (1, 2)
    assert {len(p["replica_nodes"]) for p in meta["partitions"]} == {1}
    entry = described["topic"][settings.state_topic]["min.insync.replicas"]
    assert (entry["value"], entry["config_source"]) == ("1", "DYNAMIC_TOPIC_CONFIG")
