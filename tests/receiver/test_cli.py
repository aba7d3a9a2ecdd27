"""``revocast receiver``: argument parsing and settings errors (serving is covered by the app
tests and the Kafka integration test)."""

from __future__ import annotations

import pytest

from revocast.cli import main

PUBLISHER_ENV = {"REVOCAST_EVENT_ISSUER": "ssf-bridge", "REVOCAST_ALLOW_UNSIGNED": "true"}


def test_receiver_check_config_accepts_a_valid_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in {
        **PUBLISHER_ENV,
        "REVOCAST_RECEIVER_ISSUER": "https://tx.example.com",
        "REVOCAST_RECEIVER_AUDIENCE": "https://me.example.com",
        "REVOCAST_RECEIVER_PUSH_TOKENS": "0123456789abcdef0123",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["receiver", "--check-config"]) == 0
    assert "OK" in capsys.readouterr().out


def test_receiver_does_not_need_the_publishers_event_issuer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Its events carry REVOCAST_RECEIVER_EVENT_ISSUER; REVOCAST_EVENT_ISSUER named nothing
    the receiver publishes, yet without it the command refused to start."""
    monkeypatch.delenv("REVOCAST_EVENT_ISSUER", raising=False)
    for name, value in {
        "REVOCAST_ALLOW_UNSIGNED": "true",
        "REVOCAST_RECEIVER_ISSUER": "https://tx.example.com",
        "REVOCAST_RECEIVER_AUDIENCE": "https://me.example.com",
        "REVOCAST_RECEIVER_PUSH_TOKENS": "0123456789abcdef0123",
    }.items():
        monkeypatch.setenv(name, value)

    assert main(["receiver", "--check-config"]) == 0, capsys.readouterr().err
    assert "OK" in capsys.readouterr().out


def test_receiver_names_the_bad_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in PUBLISHER_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("REVOCAST_RECEIVER_ISSUER", "https://tx.example.com")
    monkeypatch.setenv("REVOCAST_RECEIVER_AUDIENCE", "https://me.example.com")
    monkeypatch.setenv("REVOCAST_RECEIVER_ALGORITHMS", "HS256")

    assert main(["receiver", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "REVOCAST_RECEIVER_" in err
    assert "HS256" in err


def test_receiver_without_any_source_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in PUBLISHER_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REVOCAST_RECEIVER_ISSUER", raising=False)
    monkeypatch.delenv("REVOCAST_RECEIVER_LOGOUT_ISSUER", raising=False)

    assert main(["receiver"]) == 2
    assert "nothing to receive" in capsys.readouterr().err


def test_receiver_with_a_transmitter_but_no_way_for_its_sets_to_arrive_is_a_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Without push tokens the push endpoint is off, without a poll URL nothing polls: every
    # SET the transmitter holds would silently never be applied.
    for name, value in {
        **PUBLISHER_ENV,
        "REVOCAST_RECEIVER_ISSUER": "https://tx.example.com",
        "REVOCAST_RECEIVER_AUDIENCE": "https://me.example.com",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("REVOCAST_RECEIVER_PUSH_TOKENS", raising=False)
    monkeypatch.delenv("REVOCAST_RECEIVER_POLL_URL", raising=False)

    assert main(["receiver", "--check-config"]) == 2
    err = capsys.readouterr().err
    assert "REVOCAST_RECEIVER_PUSH_TOKENS" in err
    assert "REVOCAST_RECEIVER_POLL_URL" in err
