"""The ``revocast`` entry point itself: options every command shares."""

from __future__ import annotations

import os
import socket
import subprocess
import sys


def test_verbose_never_prints_the_kafka_sasl_password() -> None:
    # kafka-python's DEBUG log shows each client's configuration (sasl_plain_password) and
    # the SASL/PLAIN request bytes; -v turned on DEBUG for every logger, kafka's included.
    password = "hunter2-" + os.urandom(6).hex()
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts, never answers
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("REVOCAST_", "KAFKA_"))},
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{silent.getsockname()[1]}",
            "REVOCAST_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "REVOCAST_KAFKA_SASL_MECHANISM": "PLAIN",
            "REVOCAST_KAFKA_SASL_USERNAME": "ops",
            "REVOCAST_KAFKA_SASL_PASSWORD": password,
            "REVOCAST_KAFKA_OPTIONS": '{"bootstrap_timeout_ms": 1000}',
        }
        result = subprocess.run(
            [sys.executable, "-m", "revocast.cli", "-v", "status"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1, result.stderr
    assert " INFO kafka." in result.stderr  # -v still shows what kafka-python does
    assert password not in result.stdout + result.stderr
