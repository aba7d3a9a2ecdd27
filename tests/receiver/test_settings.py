from __future__ import annotations

from pathlib import Path

import pytest

from receiver import ReceiverSettings, TransmitterSettings
from revocation_events import SettingsError

P = "REVOCAST_RECEIVER_"


def test_from_env_reads_every_source() -> None:
    settings = ReceiverSettings.from_env(
        environ={
            f"{P}ISSUER": "https://tx.example.com/ssf",
            f"{P}AUDIENCE": "https://a, https://b",
            f"{P}ALGORITHMS": "ES256,EdDSA",
            f"{P}PUSH_TOKENS": "0123456789abcdef-old,0123456789abcdef-new",
            f"{P}POLL_URL": "https://tx.example.com/poll",
            f"{P}POLL_MAX_EVENTS": "25",
            f"{P}LOGOUT_ISSUER": "https://op.example.com",
            f"{P}LOGOUT_AUDIENCE": "client-1",
            f"{P}DEDUPE_PATH": "/tmp/x.sqlite3",
            f"{P}WATERMARK_ON_RISK_INCREASE": "false",
            f"{P}UNBLOCK_ON_ACCOUNT_ENABLED": "false",
            f"{P}EMAIL_IGNORES_CASE": "true",
            f"{P}MAX_ALIASES": "8",
        }
    )

    assert settings.transmitter is not None
    assert settings.transmitter.audience == ("https://a", "https://b")
    assert settings.transmitter.algorithms == ("ES256", "EdDSA")
    assert len(settings.transmitter.push_tokens) == 2
    assert settings.transmitter.metadata_url == (
        "https://tx.example.com/.well-known/ssf-configuration/ssf"
    )
    assert settings.poll is not None
    assert settings.poll.max_events == 25
    assert settings.logout is not None
    assert settings.logout.metadata_url == "https://op.example.com/.well-known/openid-configuration"
    assert settings.dedupe_path == Path("/tmp/x.sqlite3")
    assert settings.mapping.watermark_on_risk_increase is False
    assert settings.mapping.unblock_on_account_enabled is False
    assert settings.mapping.email_ignores_case is True
    assert settings.max_aliases == 8


def test_empty_environment_configures_no_source() -> None:
    settings = ReceiverSettings.from_env(environ={})

    assert (settings.transmitter, settings.poll, settings.logout) == (None, None, None)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({f"{P}ISSUER": "https://tx", f"{P}AUDIENCE": "a", f"{P}ALGORITHMS": "none"}, "none"),
        ({f"{P}ISSUER": "https://tx", f"{P}AUDIENCE": "a", f"{P}ALGORITHMS": "HS256"}, "HS256"),
        ({f"{P}ISSUER": "https://tx"}, f"{P}ISSUER/AUDIENCE"),
        ({f"{P}ISSUER": "https://tx", f"{P}AUDIENCE": "a", f"{P}PUSH_TOKENS": "short"}, "16"),
        ({f"{P}LEEWAY": "soon"}, f"{P}LEEWAY"),
        ({f"{P}POLL_URL": "https://tx/poll"}, "transmitter"),
        ({f"{P}LOGOUT_ISSUER": "https://op"}, f"{P}LOGOUT_"),
        ({f"{P}EMAIL_IS_SUBJECT": "maybe"}, f"{P}EMAIL_IS_SUBJECT"),
        ({f"{P}MAX_ALIASES": "0"}, f"{P}MAX_ALIASES must be >= 1, got 0"),
        ({f"{P}MAX_ALIASES": "many"}, f"{P}MAX_ALIASES"),
    ],
)
def test_bad_environment_names_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        ReceiverSettings.from_env(environ=env)


def test_alias_bound_defaults_to_32_and_must_be_positive() -> None:
    assert ReceiverSettings.from_env(environ={}).max_aliases == 32
    with pytest.raises(SettingsError, match="max_aliases"):
        ReceiverSettings(max_aliases=0)


def test_push_tokens_never_appear_in_repr() -> None:
    settings = TransmitterSettings(
        issuer="https://tx", audience=("a",), push_tokens=("super-secret-token-value",)
    )

    assert "super-secret" not in repr(settings)


def test_a_dedupe_retention_within_the_leeway_is_refused() -> None:
    # Every SET older than retention - leeway is refused as a possible replay.
    with pytest.raises(SettingsError, match="dedupe_retention"):
        ReceiverSettings(dedupe_retention=30.0, leeway=60.0)


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({f"{P}ISSUER": "http://tx.example.com", f"{P}AUDIENCE": "a"}, "configuration_url"),
        (
            {
                f"{P}ISSUER": "https://tx.example.com",
                f"{P}AUDIENCE": "a",
                f"{P}JWKS_URI": "http://tx.example.com/jwks",
            },
            "jwks_uri",
        ),
        (
            {
                f"{P}ISSUER": "https://tx.example.com",
                f"{P}AUDIENCE": "a",
                f"{P}POLL_URL": "http://tx.example.com/poll",
            },
            "poll url",
        ),
        ({f"{P}LOGOUT_ISSUER": "http://op.example.com", f"{P}LOGOUT_AUDIENCE": "c"}, "logout"),
    ],
    ids=["issuer", "jwks_uri", "poll", "logout issuer"],
)
def test_keys_and_tokens_never_travel_over_plain_http_to_another_host(
    env: dict[str, str], named: str
) -> None:
    # Whoever sits on the path could swap the keys (and sign SETs revoking or blocking
    # anyone) or read the receiver token sent to the poll endpoint.
    with pytest.raises(SettingsError, match=f"{named}.*https"):
        ReceiverSettings.from_env(environ=env)


def test_plain_http_is_allowed_to_a_loopback_transmitter() -> None:
    settings = ReceiverSettings.from_env(
        environ={
            f"{P}ISSUER": "http://127.0.0.1:9000/ssf",
            f"{P}AUDIENCE": "a",
            f"{P}POLL_URL": "http://localhost:9000/poll",
            f"{P}LOGOUT_ISSUER": "http://[::1]:9001",
            f"{P}LOGOUT_AUDIENCE": "c",
        }
    )

    assert settings.poll is not None
