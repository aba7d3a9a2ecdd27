"""``revocast demo``: the whole system on this machine, and the scripted scenario."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import FrameType

from revocast.demo._launcher import LaunchError, ProcessGroup, free_port, port_is_free
from revocast.demo._scenario import run_scenario
from revocast.demo._stack import StackConfig, service_specs

__all__ = ["run_demo"]

_EXIT_SIGTERM = 128 + signal.SIGTERM


class _Terminated(BaseException):
    """SIGTERM arrived: unwind as Ctrl-C does, so every child process is stopped."""


@contextlib.contextmanager
def _sigterm_unwinds() -> Iterator[None]:
    # Without a handler SIGTERM (kill, a supervisor, CI's timeout) ends Python at once: no
    # finally runs, the children die by PDEATHSIG (SIGKILL, no clean shutdown) and a local
    # broker's data and the demo's directory stay behind.
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the cleanup
        raise _Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _kafka(out: Callable[[str], None]) -> Iterator[str]:
    existing = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if existing:
        out(f"Kafka: using KAFKA_BOOTSTRAP_SERVERS={existing}")
        yield existing
        return
    from revocast.localkafka import LocalKafkaBroker, LocalKafkaError

    out("Kafka: starting a local Apache Kafka broker (KRaft, jars cached from Maven Central)…")
    with contextlib.ExitStack() as stack:
        try:
            broker = stack.enter_context(LocalKafkaBroker())
        except LocalKafkaError as exc:
            raise LaunchError(f"kafka (local broker): {exc}") from exc
        out(f"Kafka: ready at {broker.bootstrap_servers}")
        yield broker.bootstrap_servers


def _ports(cfg: StackConfig) -> StackConfig:
    """Keep the documented ports when free, else pick free ones (a second demo, CI)."""
    names = ("identity_port", "orders_port", "billing_port", "inventory_port")
    if all(port_is_free(cfg.host, getattr(cfg, n)) for n in names):
        return cfg
    # Each port is free when picked, but the four picks must also differ from one another.
    ports: list[int] = []
    while len(ports) < len(names):
        port = free_port(cfg.host)
        if port not in ports:
            ports.append(port)
    identity, orders, billing, inventory = ports
    return replace(
        cfg,
        identity_port=identity,
        orders_port=orders,
        billing_port=billing,
        inventory_port=inventory,
    )


def run_demo(*, scenario_only: bool, out: Callable[[str], None] = print) -> int:
    """Run the stack and the scenario; every child process is stopped on return, on an
    exception, on Ctrl-C and on SIGTERM (then 143 is returned). The demo's directory is
    removed unless the demo failed: then its logs stay and their path is printed."""
    work = Path(tempfile.mkdtemp(prefix="revocast-demo-"))
    try:
        with _sigterm_unwinds():
            code = _run(work, scenario_only=scenario_only, out=out)
    except _Terminated:
        out("\nstopped (SIGTERM)")
        code = _EXIT_SIGTERM
    except KeyboardInterrupt:
        shutil.rmtree(work, ignore_errors=True)
        raise
    except Exception:
        if (work / "logs").is_dir():
            out(f"\nlogs of every process: {work / 'logs'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    shutil.rmtree(work, ignore_errors=True)
    return code


def _run(work: Path, *, scenario_only: bool, out: Callable[[str], None]) -> int:
    from producer import PublishError, UnsafeTopicConfigError, ensure_topic
    from revocation_events import KafkaSettings, parse_signing_key, public_key_spec

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
        try:
            ensure_topic(
                KafkaSettings(bootstrap_servers=tuple(bootstrap.split(",")), topic=cfg.topic),
                max_token_lifetime=cfg.max_token_lifetime,
                partitions=6,
                replication_factor=1,
            )
        except (PublishError, UnsafeTopicConfigError) as exc:
            raise LaunchError(f"kafka at {bootstrap}: {exc}") from exc
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
