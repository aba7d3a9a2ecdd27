"""``revocast replay`` and ``revocast check``, end to end against the real broker."""

from __future__ import annotations

import io
import os
import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from kafka import KafkaProducer

from revocast.cli import main
from revocation_events import (
    EventCodec,
    EventSigner,
    SigningKey,
    SubjectBlocked,
    TokenRevoked,
    public_key_spec,
)
from tests._kafka_fixtures import MakeTopic

KEY = SigningKey.hmac("ops", os.urandom(32))
SECRET = "s" * 32


def token(**claims: object) -> str:
    now = int(time.time())
    body = {"sub": "alice", "jti": "j-ok", "iat": now, "exp": now + 600, **claims}
    return jwt.encode(body, SECRET, algorithm="HS256")


@pytest.fixture
def topic(kafka_bootstrap: str, make_topic: MakeTopic, monkeypatch: pytest.MonkeyPatch) -> str:
    name = make_topic(partitions=3)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", name)
    monkeypatch.setenv("REVOCAST_EVENT_KEYS", public_key_spec(KEY))
    monkeypatch.setenv("REVOCAST_MAX_TOKEN_LIFETIME", "900")
    codec = EventCodec(signer=EventSigner(KEY))
    forged = EventCodec(signer=EventSigner(SigningKey.hmac("ops", os.urandom(32))))
    later = datetime.now(UTC) + timedelta(minutes=10)
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
    try:
        records = [
            codec.encode(TokenRevoked(issuer="t", jti="j-revoked", sub="alice", expires_at=later)),
            codec.encode(SubjectBlocked(issuer="t", sub="mallory")),
            forged.encode(SubjectBlocked(issuer="t", sub="bob")),
        ]
        for r in records:
            producer.send(name, key=r.key, value=r.value, headers=list(r.headers))
        producer.send(name, key=b"x", value=b"\xffnot json")
        producer.flush()
    finally:
        producer.close()
    return name


@pytest.mark.kafka
def test_replay_summarises_live_rules_and_skipped_records_by_reason(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["replay", "--from-beginning", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "records read: 4" in out
    assert "bad_signature        1" in out
    assert "unsigned             1" in out  # authenticity is checked before parsing
    assert "jti                  1" in out or "jtis                 1" in out
    assert "oldest event: 20" in out


@pytest.mark.kafka
def test_check_names_the_rule_that_revokes_a_token_and_exits_1(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", token(jti="j-revoked")]) == 1
    out = capsys.readouterr().out
    assert "verdict: REVOKED by rule jti" in out
    assert "signature: NOT verified" in out


@pytest.mark.kafka
def test_check_reports_a_blocked_subject(topic: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", token(sub="mallory", jti="other")]) == 1
    assert "REVOKED by rule blocked" in capsys.readouterr().out


@pytest.mark.kafka
def test_check_accepts_a_token_no_rule_matches_even_if_a_forged_event_named_it(
    topic: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", token(sub="bob", jti="fine")]) == 0
    assert "verdict: accepted" in capsys.readouterr().out


def test_check_refuses_garbage_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "not-a-token"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("revocast: error: not a JWT")
    assert len(err.splitlines()) == 1


def test_replay_says_so_when_the_broker_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    monkeypatch.setenv("REVOCAST_KAFKA_OPTIONS", '{"bootstrap_timeout_ms": 1500}')
    assert main(["replay", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("revocast: error: cannot reach Kafka at 127.0.0.1:1")
    assert len(err.splitlines()) == 1


def test_check_exits_3_not_1_when_the_log_cannot_be_read(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1 means revoked: a script could not tell an unreachable broker from a revoked token.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    monkeypatch.setenv("REVOCAST_KAFKA_OPTIONS", '{"bootstrap_timeout_ms": 1500}')
    assert main(["check", token()]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("revocast: error: cannot reach Kafka at 127.0.0.1:1")


@pytest.mark.kafka
def test_replay_says_so_when_the_topic_is_missing(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("REVOCAST_TOPIC", "no-such-topic-for-revocast")
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    assert main(["replay", "--no-progress"]) == 1
    assert "topic 'no-such-topic-for-revocast' does not exist" in capsys.readouterr().err


def test_missing_event_keys_is_a_settings_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("REVOCAST_EVENT_KEYS", raising=False)
    monkeypatch.delenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", raising=False)
    assert main(["replay"]) == 2
    assert "REVOCAST_EVENT_KEYS" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["replay", "rebuild-state"])
@pytest.mark.parametrize("since", ["1e20", "inf", "-1e20"])
def test_since_out_of_range_is_a_one_line_error(
    command: str, since: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("REVOCAST_ALLOW_UNSIGNED_EVENTS", "true")
    assert main([command, f"--since={since}", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("revocast: error: --since:")
    assert len(err.splitlines()) == 1


@pytest.mark.parametrize("source", ["argument", "stdin"])
def test_check_of_bytes_that_are_not_utf8_is_a_one_line_verdict(
    source: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Python hands undecodable argv/stdin bytes over as lone surrogates (surrogateescape);
    # PyJWT's encode() raised UnicodeEncodeError on them: a traceback.
    garbage = "\udcff\udcfe.e30.c2ln"
    if source == "stdin":
        monkeypatch.setattr("sys.stdin", io.StringIO(garbage))
    assert main(["check", "-" if source == "stdin" else garbage]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "revocast: error: not a JWT: token is not valid UTF-8 text"
