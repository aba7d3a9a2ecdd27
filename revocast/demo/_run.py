"""``revocast demo``: the whole system on this machine, and the scripted scenario."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from revocast.demo._launcher import ProcessGroup, free_port, port_is_free
from revocast.demo._scenario import run_scenario
from revocast.demo._stack import StackConfig, service_specs

__all__ = ["run_demo"]


@contextlib.contextmanager
def _kafka(out: Callable[[str], None]) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        out(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={existing}")
        yield existing
        return
    from revocast.localkafka import LocalKafkaBroker

    out("Kafka: starting a local Apache Kafka broker (KRaft, jars cached from Maven Central)…")
    with LocalKafkaBroker() as broker:
        out(f"Kafka: ready at {broker.bootstrap_servers}")
        yield broker.bootstrap_servers


def _ports(cfg: StackConfig) -> StackConfig:
    """Keep the documented ports when free, else pick free ones (a second demo, CI)."""
    names = ("identity_port", "orders_port", "billing_port", "inventory_port")
    if all(port_is_free(cfg.host, getattr(cfg, n)) for n in names):
        return cfg
    return replace(
        cfg,
        identity_port=free_port(cfg.host),
        orders_port=free_port(cfg.host),
        billing_port=free_port(cfg.host),
        inventory_port=free_port(cfg.host),
    )


def run_demo(*, scenario_only: bool, out: Callable[[str], None] = print) -> int:
    from producer import ensure_topic
    from revocation_events import KafkaSettings, parse_signing_key, public_key_spec

    work = Path(tempfile.mkdtemp(prefix="revocast-demo-"))
    seed = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    signing_spec = f"demo:ed25519:{seed}"
    public_spec = public_key_spec(parse_signing_key(signing_spec))
    with _kafka(out) as bootstrap:
        cfg = _ports(
            StackConfig(
                bootstrap_servers=bootstrap,
                event_signing_key=signing_spec,
                event_verification_keys=public_spec,
                admin_token=secrets.token_urlsafe(24),
                data_dir=str(work),
                python=sys.executable,
            )
        )
        ensure_topic(
            KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=cfg.topic),
            max_token_lifetime=cfg.max_token_lifetime,
            partitions=6,
            replication_factor=1,
        )
        specs = service_specs(cfg)
        with ProcessGroup(work / "logs") as group:
            for spec in specs:
                out(f"start {spec.name:<10} {spec.framework:<44} port {spec.port or '-'}")
                group.start(spec, cfg.python)
            group.check_alive()
            services = [(s.name, f"http://127.0.0.1:{s.port}") for s in specs[2:]]
            out("\nScenario: every revocation must be enforced by every service\n")
            run_scenario(cfg, services, out)
            group.check_alive()
            if scenario_only or not sys.stdin.isatty():
                return 0
            _print_try_it(cfg, services, out)
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            out("\nstopping…")
    return 0


def _print_try_it(
    cfg: StackConfig, services: list[tuple[str, str]], out: Callable[[str], None]
) -> None:
    idp = cfg.identity_url
    out("\nThe stack keeps running. Try it (Ctrl-C stops everything):\n")
    out(
        f"  TOKEN=$(curl -s {idp}/login -H 'content-type: application/json' "
        '-d \'{"username":"erin","password":"correct horse battery"}\' '
        "| python -c 'import sys,json;print(json.load(sys.stdin)[\"access_token\"])')"
    )
    for name, base in services:
        out(f'  curl -i {base}/whoami -H "Authorization: Bearer $TOKEN"    # {name}')
    out(f'  curl -X POST {idp}/logout -H "Authorization: Bearer $TOKEN"')
    out("  # …then call the services again: 401 everywhere.")
