from __future__ import annotations

import re
from pathlib import Path

import pytest

from revocast.cli import main
from revocast.cli._publish import EXIT_QUEUED
from revocation_events import (
    EventCodec,
    EventVerifier,
    parse_signing_key,
    parse_verification_keys,
)
from tests._kafka_fixtures import MakeTopic
from tests.producer._support import UNREACHABLE, read_records


@pytest.fixture
def keys(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    assert main(["keys", "generate", "--type", "ed25519", "--kid", "cli-key"]) == 0
    out = capsys.readouterr().out.splitlines()
    signing = out[0].removeprefix("REVOCAST_SIGNING_KEY=")
    verification = out[1].removeprefix("REVOCAST_EVENT_KEYS=")
    return signing, verification


@pytest.fixture
def env(
    monkeypatch: pytest.MonkeyPatch, keys: tuple[str, str], tmp_path: Path
) -> pytest.MonkeyPatch:
    for name in ("REVOCAST_DELIVERY", "REVOCAST_ALLOW_UNSIGNED", "REVOCAST_KAFKA_OPTIONS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REVOCAST_EVENT_ISSUER", "cli-test")
    monkeypatch.setenv("REVOCAST_SIGNING_KEY", keys[0])
    monkeypatch.setenv("REVOCAST_OUTBOX_PATH", str(tmp_path / "outbox.sqlite3"))
    monkeypatch.setenv("REVOCAST_MAX_BLOCK", "1")
    return monkeypatch


@pytest.mark.parametrize("kind", ["hmac", "ed25519"])
def test_generated_keys_sign_and_verify_each_other(
    kind: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "generate", "--type", kind, "--kid", "k9"]) == 0
    signing_line, verify_line = capsys.readouterr().out.splitlines()
    signing = parse_signing_key(signing_line.split("=", 1)[1])
    (verification,) = parse_verification_keys(verify_line.split("=", 1)[1])
    assert verification.kid == signing.kid == "k9"
    header = signing.sign(b"payload")
    assert EventVerifier([verification]).verify(b"payload", header) == "k9"


COMMANDS = [
    (["revoke", "token", "j1", "--exp", "2099-01-01T00:00:00Z", "--sub", "alice"], b"alice"),
    (["revoke", "token", "j2", "--exp", "4070908800"], b"jti:j2"),
    (["revoke", "session", "s1", "--sub", "bob"], b"bob"),
    (["revoke", "subject", "carol", "--issued-before", "2020-01-01T00:00:00+00:00"], b"carol"),
    (["revoke", "key", "old"], b"kid:old"),
    (["revoke", "all"], b"global"),
    (["block", "dave"], b"dave"),
    (["unblock", "dave"], b"dave"),
    (["delete-subject", "erin"], b"erin"),
    (["bump-version", "frank", "--min-version", "4"], b"frank"),
]


@pytest.mark.kafka
@pytest.mark.parametrize(("argv", "key"), COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_command_publishes_a_verifiable_event_and_prints_where(
    argv: list[str],
    key: bytes,
    env: pytest.MonkeyPatch,
    keys: tuple[str, str],
    make_topic: MakeTopic,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topic = make_topic(partitions=3)
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    env.setenv("REVOCAST_TOPIC", topic)
    assert main([*argv, "--reason", "cli test"]) == 0
    out = capsys.readouterr().out
    match = re.fullmatch(r"published (\S+) topic=(\S+) partition=(\d+) offset=(\d+)\n", out)
    assert match is not None, out
    (rec,) = read_records(kafka_bootstrap, topic, 1)
    event = EventCodec(verifier=EventVerifier(parse_verification_keys(keys[1]))).decode(
        rec.value, rec.headers
    )
    assert str(event.id) == match.group(1)
    assert (rec.key, rec.partition) == (key, int(match.group(3)))
    assert event.reason == "cli test"


def test_unreachable_kafka_queues_and_exits_3(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", UNREACHABLE)
    env.setenv("REVOCAST_ACK_TIMEOUT", "0.05")
    assert main(["block", "alice"]) == EXIT_QUEUED
    assert "queued" in capsys.readouterr().out


def test_direct_mode_failure_exits_1(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", UNREACHABLE)
    env.setenv("REVOCAST_DELIVERY", "direct")
    assert main(["block", "alice"]) == 1
    assert "no Kafka broker reachable" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("unset", "argv", "message"),
    [
        ("REVOCAST_SIGNING_KEY", ["block", "a"], "REVOCAST_SIGNING_KEY is not set"),
        ("REVOCAST_EVENT_ISSUER", ["block", "a"], "REVOCAST_EVENT_ISSUER is not set"),
        (None, ["revoke", "token", "j", "--exp", "2099-01-01T00:00:00"], "needs a timezone"),
        (None, ["revoke", "token", "j", "--exp", "soon"], "neither ISO 8601"),
        (None, ["revoke", "token", "j", "--exp", "2000-01-01T00:00:00Z"], "already expired"),
        (None, ["block", ""], "sub must be a non-empty string"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(
    unset: str | None,
    argv: list[str],
    message: str,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    env.setenv("KAFKA_BOOTSTRAP_SERVERS", UNREACHABLE)
    if unset:
        env.delenv(unset)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_ed25519_verification_spec_does_not_reveal_the_private_key(
    keys: tuple[str, str],
) -> None:
    signing, verification = keys
    assert signing.split(":")[2] != verification.split(":")[2]
    assert signing.split(":")[2] not in verification


@pytest.mark.parametrize("kid", ["a:b", "a.b", "a,b", "k\u00e9", ""])
def test_keys_generate_refuses_a_bad_kid_naming_the_rule(
    kid: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The key was parsed back from 'kid:type:material': 'a:b' split there and was reported as
    # "key 'a': material is not base64url".
    assert main(["keys", "generate", "--kid", kid]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # no key printed
    assert captured.err == (
        f"revocast: error: --kid {kid!r}: a key id must be 1-128 printable ASCII characters "
        "without '.', ':' or ','\n"
    )
