"""The ``revocast`` entry point itself: options every command shares."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import revocast.cli as cli


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


def registered(parser: argparse.ArgumentParser) -> set[str]:
    """The command names ``parser`` accepts."""
    (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return set(commands.choices)


def test_the_command_table_names_every_command_the_modules_register() -> None:
    assert registered(cli._build_parser()) == set(cli._COMMANDS)
    for command, module in cli._COMMANDS.items():
        assert command in registered(cli._build_parser(cli._modules_for([command]))), module


def test_help_still_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    listed = {
        line.split()[0] for line in capsys.readouterr().out.splitlines() if line[:4] == " " * 4
    }
    assert listed >= set(cli._COMMANDS)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["kafka", "status"], ("revocast.cli._kafka",)),
        (["-v", "check", "-"], ("revocast.cli._ops",)),
        (["--verbose", "block", "alice"], ("revocast.cli._publish",)),
        (["-h", "kafka"], cli._COMMAND_MODULES),  # the top-level help: all of them
        (["--", "kafka"], cli._COMMAND_MODULES),
        (["no-such-command"], cli._COMMAND_MODULES),  # its error lists every command
        ([], cli._COMMAND_MODULES),
    ],
)
def test_a_command_line_imports_the_module_of_its_command_only(
    argv: list[str], expected: tuple[str, ...]
) -> None:
    assert cli._modules_for(argv) == expected


def test_kafka_status_imports_no_other_command_nor_kafka_python(tmp_path: Path) -> None:
    # Every command imported every command module, and with them kafka-python, pydantic,
    # the producer: ~0.5 s before 'revocast kafka status' could answer.
    probe = (
        "import sys\n"
        "from revocast.cli import main\n"
        f"code = main(['kafka', 'status', '--state-file', {str(tmp_path / 'none.json')!r}])\n"
        "heavy = [m for m in ('kafka', 'producer', 'pydantic', 'revocast.cli._publish',"
        " 'revocast.cli._status') if m in sys.modules]\n"
        "print(code, heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.splitlines()[-1] == "1 []", result.stderr


def test_a_command_module_that_fails_to_import_fails_its_command_loudly_and_only_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "revocast.cli._bench", None)  # as a missing dependency
    with pytest.raises(ImportError, match=r"revocast\.cli\._bench"):
        cli.main(["bench"])
    assert cli.main(["kafka", "status", "--state-file", str(tmp_path / "none.json")]) == 1
    assert capsys.readouterr().out == "kafka not running\n"


@pytest.mark.parametrize("command", [["receiver"], ["kafka", "up"]])
@pytest.mark.parametrize("value", ["65536", "99999", "-1"])
def test_a_port_outside_0_65535_is_a_usage_error(command: list[str], value: str) -> None:
    # Parsed only: 'receiver --port 99999' ran and died in bind() with an OverflowError.
    parser = cli._build_parser(cli._modules_for(command))
    with pytest.raises(cli._UsageError, match=f"argument --port: port {value} is outside"):
        parser.parse_args([*command, "--port", value])
