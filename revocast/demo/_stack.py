"""The demo stack, defined once for both launchers.

:func:`service_specs` is the single source of truth: the process launcher runs these commands
on this machine, and :func:`render_compose` turns the same specs into ``docker-compose.yml``
(a test checks the checked-in file equals the rendering), so the two cannot drift.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["ServiceSpec", "StackConfig", "render_compose", "service_specs"]

DEMO_USERS = ("alice", "bob", "carol", "dave", "erin")
DEMO_PASSWORD = "correct horse battery"  # noqa: S105 - demo users only


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    """Ports, addresses and shared secrets of one demo stack."""

    bootstrap_servers: str = "127.0.0.1:9092"
    host: str = "127.0.0.1"
    identity_port: int = 8000
    orders_port: int = 8001
    billing_port: int = 8002
    inventory_port: int = 8003
    topic: str = "revocast.revocations"
    max_token_lifetime: int = 900
    access_token_ttl: int = 300
    event_signing_key: str = field(repr=False, default="")
    """``kid:ed25519:<seed>``: held by the identity service only."""
    event_verification_keys: str = ""
    """``kid:ed25519:<public key>``: what the services and the worker verify events with."""
    admin_token: str = field(repr=False, default="")
    data_dir: str = ".revocast/demo"
    python: str = sys.executable
    inventory_workers: int = 2

    @property
    def identity_url(self) -> str:
        return f"http://{self.host}:{self.identity_port}"


@dataclass(frozen=True, kw_only=True)
class ServiceSpec:
    name: str
    argv: tuple[str, ...]
    """Command after the Python interpreter (``python -m …``)."""
    port: int | None
    env: Mapping[str, str]
    health_path: str | None = "/healthz"
    framework: str = ""


def _common_env(cfg: StackConfig) -> dict[str, str]:
    return {
        "KAFKA_BOOTSTRAP_SERVERS": cfg.bootstrap_servers,
        "REVOCAST_TOPIC": cfg.topic,
        "REVOCAST_MAX_TOKEN_LIFETIME": str(cfg.max_token_lifetime),
    }


def _service_env(cfg: StackConfig, name: str) -> dict[str, str]:
    # Services hold only what verifies: the JWKS URL and the event public key.
    return {
        **_common_env(cfg),
        "REVOCAST_SERVICE_NAME": name,
        "REVOCAST_ALGORITHMS": "RS256",
        "REVOCAST_JWKS_URL": f"{cfg.identity_url}/.well-known/jwks.json",
        "REVOCAST_ISSUER": cfg.identity_url,
        "REVOCAST_AUDIENCE": "revocast-demo",
        "REVOCAST_EVENT_KEYS": cfg.event_verification_keys,
        "REVOCAST_MAX_STALENESS": "30",
    }


def service_specs(cfg: StackConfig) -> list[ServiceSpec]:
    """Every process of the demo except Kafka, in start order."""
    uvicorn = ("-m", "uvicorn", "--host", cfg.host, "--no-access-log", "--log-level", "warning")
    return [
        ServiceSpec(
            name="streams",
            argv=("-m", "revocast.cli", "streams", "--", "-l", "warn", "--without-web"),
            port=None,
            env={
                **_common_env(cfg),
                "REVOCAST_EVENT_KEYS": cfg.event_verification_keys,
                "REVOCAST_STREAMS_DATA_DIR": f"{cfg.data_dir}/streams",
            },
            health_path=None,
            framework="faust-streaming",
        ),
        ServiceSpec(
            name="identity",
            argv=(*uvicorn, "--port", str(cfg.identity_port), "revocast.demo.apps.identity:app"),
            port=cfg.identity_port,
            env={
                **_common_env(cfg),
                "REVOCAST_EVENT_ISSUER": "identity-service",
                "REVOCAST_SIGNING_KEY": cfg.event_signing_key,
                "REVOCAST_OUTBOX_PATH": f"{cfg.data_dir}/identity-outbox.sqlite3",
                "REVOCAST_IDP_ISSUER": cfg.identity_url,
                "REVOCAST_IDP_AUDIENCE": "revocast-demo",
                "REVOCAST_IDP_DB_PATH": f"{cfg.data_dir}/identity.sqlite3",
                "REVOCAST_IDP_ACCESS_TOKEN_TTL": str(cfg.access_token_ttl),
                "REVOCAST_IDP_ADMIN_TOKEN": cfg.admin_token,
                "REVOCAST_DEMO_USERS": ",".join(DEMO_USERS),
                # The default is OWASP's n=2^17 (~0.6 s and 128 MiB per hash on a small box);
                # the demo's ~17 hashes would add ~10 s. Set the default in production.
                "REVOCAST_IDP_SCRYPT_N": "16384",
            },
            framework="FastAPI",
        ),
        ServiceSpec(
            name="orders",
            argv=(*uvicorn, "--port", str(cfg.orders_port), "revocast.demo.apps.orders:app"),
            port=cfg.orders_port,
            env=_service_env(cfg, "orders"),
            framework="Starlette + ASGI middleware",
        ),
        ServiceSpec(
            name="billing",
            argv=(*uvicorn, "--port", str(cfg.billing_port), "revocast.demo.apps.billing:app"),
            port=cfg.billing_port,
            env=_service_env(cfg, "billing"),
            framework="FastAPI dependency",
        ),
        ServiceSpec(
            name="inventory",
            argv=(
                "-m",
                "gunicorn",
                "--preload",
                "--config",
                "python:revocast.demo.apps.gunicorn_conf",
                "--workers",
                str(cfg.inventory_workers),
                "--bind",
                f"{cfg.host}:{cfg.inventory_port}",
                "--log-level",
                "warning",
                "revocast.demo.apps.inventory:app",
            ),
            port=cfg.inventory_port,
            env=_service_env(cfg, "inventory"),
            framework=f"Flask under gunicorn ({cfg.inventory_workers} forked workers)",
        ),
    ]


COMPOSE_CONFIG = StackConfig(
    bootstrap_servers="kafka:9092",
    host="0.0.0.0",  # noqa: S104 - inside containers, published on the host's loopback
    event_signing_key="${REVOCAST_EVENT_SIGNING_KEY:?run revocast keys generate}",
    event_verification_keys="${REVOCAST_EVENT_PUBLIC_KEY:?run revocast keys generate}",
    admin_token="${REVOCAST_ADMIN_TOKEN:?set REVOCAST_ADMIN_TOKEN}",  # noqa: S106 - a placeholder
    data_dir="/data",
    python="python",
)


def _compose_env(spec: ServiceSpec) -> dict[str, str]:
    env = dict(spec.env)
    # Inside the compose network services reach the identity service by its service name.
    for key, value in env.items():
        env[key] = value.replace("http://0.0.0.0:", "http://identity:")
    return env


def _http_healthcheck(port: int, path: str) -> dict[str, Any]:
    # The image has no curl: urlopen raises (exit 1) on a refused connection or a 503, which
    # the services answer until their SDK has replayed the topic (what the launcher waits for).
    probe = (
        f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=2)"
    )
    return {
        "test": ["CMD", "python", "-c", probe],
        "interval": "2s",
        "timeout": "5s",
        "retries": 30,
        "start_period": "60s",
    }


def render_compose(cfg: StackConfig = COMPOSE_CONFIG) -> str:
    """``docker-compose.yml`` for the same stack (Kafka in KRaft mode from the Apache image)."""
    services: dict[str, Any] = {
        "kafka": {
            "image": "apache/kafka:4.1.1",
            "environment": {
                "KAFKA_NODE_ID": "1",
                "KAFKA_PROCESS_ROLES": "broker,controller",
                "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
                "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://kafka:9092",
                "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
                "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@kafka:9093",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
                "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR": "1",
                "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR": "1",
                "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
            },
            "healthcheck": {
                "test": [
                    "CMD",
                    "/opt/kafka/bin/kafka-topics.sh",
                    "--bootstrap-server",
                    "localhost:9092",
                    "--list",
                ],
                "interval": "5s",
                "retries": 20,
            },
        },
        "topic": {
            "build": ".",
            "command": [
                "revocast",
                "topic",
                "ensure",
                "--partitions",
                "6",
                "--replication-factor",
                "1",
            ],
            # The same topic and token lifetime as the processes (the retention depends on it).
            "environment": _common_env(cfg),
            "depends_on": {"kafka": {"condition": "service_healthy"}},
        },
    }
    for spec in service_specs(cfg):
        service: dict[str, Any] = {
            "build": ".",
            "command": [cfg.python, *spec.argv],
            "environment": _compose_env(spec),
            "volumes": ["revocast-data:/data"],
            "depends_on": {"topic": {"condition": "service_completed_successfully"}},
        }
        if spec.port is not None:
            service["ports"] = [f"127.0.0.1:{spec.port}:{spec.port}"]
        if spec.port is not None and spec.health_path is not None:
            service["healthcheck"] = _http_healthcheck(spec.port, spec.health_path)
        if spec.name not in {"streams", "identity"}:
            # The services fetch the JWKS from the identity service: wait until it answers.
            service["depends_on"]["identity"] = {"condition": "service_healthy"}
        services[spec.name] = service
    document = {"name": "revocast", "services": services, "volumes": {"revocast-data": {}}}
    header = (
        "# Generated by `revocast demo compose` from revocast/demo/_stack.py; do not edit.\n"
        "# The same service definitions drive the non-Docker launcher (`scripts/demo`).\n"
        "#   revocast keys generate --type ed25519 --kid demo   # prints both keys, then:\n"
        "#   export REVOCAST_EVENT_SIGNING_KEY=... REVOCAST_EVENT_PUBLIC_KEY=...\n"
        "#   export REVOCAST_ADMIN_TOKEN=$(openssl rand -hex 16)\n"
        "#   docker compose up --build\n"
    )
    return header + yaml.safe_dump(document, sort_keys=False, width=100)
