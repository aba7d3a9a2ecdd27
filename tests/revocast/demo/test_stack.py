"""docker-compose.yml and the non-Docker launcher come from the same service definitions."""

from __future__ import annotations

from pathlib import Path

import yaml

from revocast.demo import StackConfig, render_compose, service_specs
from revocast.demo._stack import COMPOSE_CONFIG

COMPOSE_FILE = Path(__file__).parents[3] / "docker-compose.yml"


def test_the_checked_in_compose_file_is_exactly_the_rendering_of_the_launcher_specs() -> None:
    assert COMPOSE_FILE.read_text() == render_compose(), (
        "docker-compose.yml is stale: run `revocast demo compose > docker-compose.yml`"
    )


def test_every_launcher_service_appears_in_compose_with_its_command_port_and_environment() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for spec in service_specs(COMPOSE_CONFIG):
        service = compose[spec.name]
        assert service["command"] == ["python", *spec.argv]
        if spec.port is None:
            assert "ports" not in service
        else:
            assert service["ports"] == [f"127.0.0.1:{spec.port}:{spec.port}"]
        for key, value in spec.env.items():
            assert service["environment"][key] == value.replace(
                "http://0.0.0.0:", "http://identity:"
            )


def test_compose_runs_kafka_in_kraft_mode_and_provisions_the_topic_first() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert compose["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    for spec in service_specs(COMPOSE_CONFIG):
        condition = compose[spec.name]["depends_on"]["topic"]["condition"]
        assert condition == "service_completed_successfully"


def test_compose_holds_no_secret_only_required_placeholders() -> None:
    text = COMPOSE_FILE.read_text()
    assert "${REVOCAST_EVENT_SIGNING_KEY:?" in text
    assert "${REVOCAST_EVENT_PUBLIC_KEY:?" in text
    assert "${REVOCAST_ADMIN_TOKEN:?" in text
    assert ":ed25519:" not in text


def test_services_verify_with_the_jwks_and_never_hold_the_event_signing_key() -> None:
    cfg = StackConfig(
        event_signing_key="demo:ed25519:private",
        event_verification_keys="demo:ed25519:public",
        admin_token="t" * 24,
    )
    specs = {s.name: s for s in service_specs(cfg)}
    assert "REVOCAST_SIGNING_KEY" in specs["identity"].env
    for name in ("orders", "billing", "inventory"):
        env = specs[name].env
        assert "REVOCAST_SIGNING_KEY" not in env
        assert env["REVOCAST_EVENT_KEYS"] == "demo:ed25519:public"
        assert "REVOCAST_IDP_ADMIN_TOKEN" not in env
        assert env["REVOCAST_JWKS_URL"] == f"{cfg.identity_url}/.well-known/jwks.json"
        assert env["REVOCAST_ALGORITHMS"] == "RS256"


def test_compose_provisions_the_topic_with_the_topic_and_token_lifetime_the_services_use() -> None:
    # Without them `revocast topic ensure` falls back to its defaults (a 1 h lifetime).
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    topic_env = compose["topic"]["environment"]
    for spec in service_specs(COMPOSE_CONFIG):
        env = compose[spec.name]["environment"]
        assert topic_env["REVOCAST_TOPIC"] == env["REVOCAST_TOPIC"]
        assert topic_env["REVOCAST_MAX_TOKEN_LIFETIME"] == env["REVOCAST_MAX_TOKEN_LIFETIME"]
        assert topic_env["KAFKA_BOOTSTRAP_SERVERS"] == env["KAFKA_BOOTSTRAP_SERVERS"]


def test_compose_probes_every_http_service_on_the_path_the_launcher_waits_for() -> None:
    compose = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for spec in service_specs(COMPOSE_CONFIG):
        service = compose[spec.name]
        if spec.health_path is None:
            assert "healthcheck" not in service
            continue
        test = service["healthcheck"]["test"]
        assert test[:3] == ["CMD", "python", "-c"]
        assert f"http://127.0.0.1:{spec.port}{spec.health_path}" in test[3]
        compile(test[3], "healthcheck", "exec")
        if spec.name not in {"streams", "identity"}:
            assert service["depends_on"]["identity"] == {"condition": "service_healthy"}
