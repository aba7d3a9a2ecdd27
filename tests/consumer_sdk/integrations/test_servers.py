"""Real servers, real broker: uvicorn running the ASGI middleware, and gunicorn running the
Flask extension in 4 forked worker processes, both following a real Kafka topic.

A revocation published to the topic must be enforced by every process within a deadline,
while another token of the same subject stays valid.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from kafka import KafkaProducer

from revocation_events import EventCodec, EventSigner, TokenRevoked, public_key_spec
from tests._kafka_fixtures import MakeTopic, pid_alive, wait_until
from tests.consumer_sdk._helpers import EVENT_KEY, SECRET, token

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]
APPS = "tests.consumer_sdk.integrations.servers"
WORKERS = 4
PROPAGATION_DEADLINE = 15.0
"""Seconds from publish to the last process refusing the token (normally milliseconds)."""


@dataclass(frozen=True)
class Answer:
    status: int
    pid: int | None
    description: str | None


def service_env(bootstrap: str, topic: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REVOCAST_")}
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=bootstrap,
        REVOCAST_TOPIC=topic,
        REVOCAST_ALGORITHMS="HS256",
        REVOCAST_JWT_KEY=SECRET.decode(),
        REVOCAST_JWT_KID="k1",
        REVOCAST_EVENT_KEYS=public_key_spec(EVENT_KEY),
        PYTHONPATH=str(REPO),
    )
    return env


@contextmanager
def server(
    cmd: list[str], env: dict[str, str], log: Path, **popen: object
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session; SIGTERM it (then SIGKILL its group) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **popen,  # type: ignore[call-overload]
        )
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            pytest.fail(f"{cmd[2]} ignored SIGTERM:\n{log_tail(log)}")


def log_tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def publish_revocation(bootstrap: str, topic: str, jti: str, sub: str) -> None:
    event = TokenRevoked(
        issuer="tests",
        jti=jti,
        sub=sub,
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    record = EventCodec(signer=EventSigner(EVENT_KEY)).encode(event)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    try:
        producer.send(topic, key=record.key, value=record.value, headers=list(record.headers)).get(
            timeout=30
        )
    finally:
        producer.close(timeout=10)


def ask(client: httpx.Client, url: str, bearer: str | None = None) -> Answer:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    response = client.get(url, headers=headers)
    pid = response.headers.get("x-worker-pid")
    body = response.json()
    description = body.get("error_description") if isinstance(body, dict) else None
    return Answer(response.status_code, int(pid) if pid else None, description)


def poll(
    describe: str,
    attempt: Callable[[], bool],
    *,
    timeout: float,
    log: Path,
) -> float:
    """Call ``attempt`` until it returns True; return the seconds it took."""
    start = time.monotonic()
    while not attempt():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout}s: {describe}\n{log_tail(log)}")
    return time.monotonic() - start


def wait_healthy(client: httpx.Client, base: str, log: Path) -> None:
    poll(
        "the service reporting healthy",
        lambda: ask(client, f"{base}/healthz").status == 200,
        timeout=60,
        log=log,
    )


# -- uvicorn -------------------------------------------------------------------------------


def test_uvicorn_service_refuses_a_token_revoked_on_kafka(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = make_topic(partitions=3)
    log = tmp_path / "uvicorn.log"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    target, other = f"jti-{uuid.uuid4().hex}", f"jti-{uuid.uuid4().hex}"
    revoked, kept = token(sub=sub, jti=target), token(sub=sub, jti=other)
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        f"{APPS}.starlette_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        "0",
        "--lifespan",
        "on",
    ]
    with server(cmd, service_env(kafka_bootstrap, topic), log) as proc:
        found: list[str] = []

        def started() -> bool:
            assert proc.poll() is None, f"uvicorn exited:\n{log_tail(log)}"
            found[:] = re.findall(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log.read_text())
            return bool(found)

        poll("uvicorn to listen", started, timeout=30, log=log)
        base = f"http://127.0.0.1:{found[0]}"
        with httpx.Client(timeout=10) as client:
            wait_healthy(client, base, log)
            assert ask(client, f"{base}/whoami", revoked).status == 200
            publish_revocation(kafka_bootstrap, topic, target, sub)
            poll(
                "uvicorn refusing the revoked token",
                lambda: (
                    ask(client, f"{base}/whoami", revoked)
                    == Answer(401, None, "token revoked (jti)")
                ),
                timeout=PROPAGATION_DEADLINE,
                log=log,
            )
            assert ask(client, f"{base}/whoami", kept).status == 200
    # uvicorn re-raises SIGTERM after a graceful shutdown (lifespan closed the SDK).
    assert proc.returncode in (0, -signal.SIGTERM), log_tail(log)
    assert "Application shutdown complete" in log.read_text()


# -- gunicorn, 4 forked workers ------------------------------------------------------------


def test_every_gunicorn_worker_refuses_a_token_revoked_on_kafka(
    kafka_bootstrap: str, make_topic: MakeTopic, tmp_path: Path
) -> None:
    topic = make_topic(partitions=3)
    log = tmp_path / "gunicorn.log"
    sub = f"sub-{uuid.uuid4().hex[:8]}"
    target, other = f"jti-{uuid.uuid4().hex}", f"jti-{uuid.uuid4().hex}"
    revoked, kept = token(sub=sub, jti=target), token(sub=sub, jti=other)

    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    cmd = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(WORKERS),
        "--preload",
        "--bind",
        f"fd://{listener.fileno()}",
        "--graceful-timeout",
        "10",
        f"{APPS}.flask_app:app",
    ]
    seen: set[int] = set()
    try:
        with (
            server(
                cmd, service_env(kafka_bootstrap, topic), log, pass_fds=(listener.fileno(),)
            ) as proc,
            httpx.Client(timeout=10) as client,
            ThreadPoolExecutor(2 * WORKERS) as pool,
        ):
            listener.close()  # the server holds its own copy

            def every_worker(bearer: str, expected: Answer) -> Callable[[], bool]:
                """An attempt: a burst of concurrent requests; true once every worker has
                answered ``expected`` (status and description; any pid)."""
                hits: set[int] = set()

                def attempt() -> bool:
                    assert proc.poll() is None, f"gunicorn exited:\n{log_tail(log)}"
                    burst = [f"{base}/whoami"] * (2 * WORKERS)
                    for answer in pool.map(lambda url: ask(client, url, bearer), burst):
                        assert answer.pid is not None
                        assert answer.pid != proc.pid, "the master answered a request"
                        seen.add(answer.pid)
                        if (answer.status, answer.description) == (
                            expected.status,
                            expected.description,
                        ):
                            hits.add(answer.pid)
                    assert len(seen) <= WORKERS, f"more workers than started: {seen}"
                    return len(hits) == WORKERS

                return attempt

            wait_healthy(client, base, log)
            poll(
                "every worker accepting the token before the revocation",
                every_worker(revoked, Answer(200, None, None)),
                timeout=60,
                log=log,
            )
            publish_revocation(kafka_bootstrap, topic, target, sub)
            took = poll(
                "every worker refusing the revoked token",
                every_worker(revoked, Answer(401, None, "token revoked (jti)")),
                timeout=PROPAGATION_DEADLINE,
                log=log,
            )
            poll(
                "every worker still accepting another token of the same subject",
                every_worker(kept, Answer(200, None, None)),
                timeout=30,
                log=log,
            )
            # Once refused, refused by everyone, every time.
            burst = [f"{base}/whoami"] * (4 * WORKERS)
            assert {ask(client, url, revoked).status for url in burst} == {401}
            print(f"all {WORKERS} workers refused the revoked token {took:.3f} s after publish")
    finally:
        listener.close()
    assert proc.returncode == 0, log_tail(log)
    wait_until(
        lambda: not any(pid_alive(pid) for pid in seen),
        timeout=10,
        message=f"gunicorn workers {sorted(seen)} outlived the master",
    )
