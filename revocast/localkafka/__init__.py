"""A real Apache Kafka broker for tests and local development, run from Maven jars.

No Docker needed: Java 17 and Maven resolve Kafka once into a per-user cache
(see :func:`resolve_jars`), and :class:`LocalKafkaBroker` runs a single-node
KRaft broker on 127.0.0.1::

    with LocalKafkaBroker() as broker:
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers)

``revocast kafka up|down|status`` runs one that outlives the shell command.
"""

from revocast.localkafka._broker import BrokerStartError, LocalKafkaBroker
from revocast.localkafka._jars import LocalKafkaError, MavenError, cache_dir, resolve_jars

__all__ = [
    "BrokerStartError",
    "LocalKafkaBroker",
    "LocalKafkaError",
    "MavenError",
    "cache_dir",
    "resolve_jars",
]
