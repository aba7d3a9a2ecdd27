from __future__ import annotations

import math

import pytest

from identity_service import OWASP_SCRYPT, IdentitySettings, Scrypt
from revocation_events import SettingsError

ADMIN = "admin-token-for-tests-0123456789"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.5"])
@pytest.mark.parametrize("name", ["ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL"])
def test_a_ttl_that_would_mint_unusable_or_endless_tokens_is_refused(name: str, value: str) -> None:
    # nan slipped past "<= 0" (every login then failed on int(nan)); inf made refresh tokens
    # immortal; 0.5 minted access tokens whose whole-second exp precedes their iat.
    env = {"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, f"REVOCAST_IDP_{name}": value}
    with pytest.raises(SettingsError, match=name.lower()):
        IdentitySettings.from_env(environ=env)


def test_whole_second_ttls_are_accepted() -> None:
    settings = IdentitySettings(admin_token=ADMIN, access_token_ttl=1, refresh_token_ttl=60.5)
    assert math.isfinite(settings.access_token_ttl)


def test_the_scrypt_cost_defaults_to_owasp_and_is_read_from_the_environment() -> None:
    assert IdentitySettings(admin_token=ADMIN).scrypt == OWASP_SCRYPT
    env = {"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, "REVOCAST_IDP_SCRYPT_N": "16384"}
    assert IdentitySettings.from_env(environ=env).scrypt == Scrypt(n=2**14, r=8, p=1)


@pytest.mark.parametrize(
    ("name", "value"), [("SCRYPT_N", "10000"), ("SCRYPT_N", "many"), ("SCRYPT_R", "0")]
)
def test_a_bad_scrypt_cost_names_the_setting(name: str, value: str) -> None:
    env = {"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, f"REVOCAST_IDP_{name}": value}
    with pytest.raises(SettingsError, match=f"(?i){name}"):
        IdentitySettings.from_env(environ=env)


def test_the_login_throttle_is_read_from_the_environment() -> None:
    env = {
        "REVOCAST_IDP_ADMIN_TOKEN": ADMIN,
        "REVOCAST_IDP_LOGIN_FAILURES_PER_USER": "3",
        "REVOCAST_IDP_LOGIN_FAILURES_PER_CLIENT": "30",
        "REVOCAST_IDP_LOGIN_FAILURE_WINDOW": "600",
        "REVOCAST_IDP_LOGIN_THROTTLE_MAX_KEYS": "5000",
    }
    settings = IdentitySettings.from_env(environ=env)
    assert settings.login_failures_per_user == 3
    assert settings.login_failures_per_client == 30
    assert settings.login_failure_window == 600.0
    assert settings.login_throttle_max_keys == 5000


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOGIN_FAILURES_PER_USER", "0"),  # would refuse every login
        ("LOGIN_FAILURES_PER_CLIENT", "five"),
        ("LOGIN_FAILURE_WINDOW", "inf"),  # one failure would lock a name forever
        ("LOGIN_FAILURE_WINDOW", "nan"),
        ("LOGIN_THROTTLE_MAX_KEYS", "10"),  # a handful of names would evict a victim's count
    ],
)
def test_a_login_throttle_that_locks_everyone_out_or_is_trivially_evicted_is_refused(
    name: str, value: str
) -> None:
    env = {"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, f"REVOCAST_IDP_{name}": value}
    with pytest.raises(SettingsError, match=f"(?i){name}"):
        IdentitySettings.from_env(environ=env)


def test_hashes_run_four_at_a_time_by_default_waiting_a_second_and_read_from_the_environment() -> (
    None
):
    # 4 x 128 MiB at the default cost: 512 MiB at peak, whatever the number of requests.
    settings = IdentitySettings(admin_token=ADMIN)
    assert (settings.max_concurrent_hashes, settings.hash_slot_wait) == (4, 1.0)
    env = {
        "REVOCAST_IDP_ADMIN_TOKEN": ADMIN,
        "REVOCAST_IDP_MAX_CONCURRENT_HASHES": "2",
        "REVOCAST_IDP_HASH_SLOT_WAIT": "0.5",
    }
    settings = IdentitySettings.from_env(environ=env)
    assert (settings.max_concurrent_hashes, settings.hash_slot_wait) == (2, 0.5)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_CONCURRENT_HASHES", "0"),
        ("MAX_CONCURRENT_HASHES", "four"),
        ("HASH_SLOT_WAIT", "-1"),
        ("HASH_SLOT_WAIT", "nan"),
        ("HASH_SLOT_WAIT", "inf"),
        ("HASH_SLOT_WAIT", "61"),
    ],
)
def test_a_bad_hashing_bound_names_the_setting(name: str, value: str) -> None:
    env = {"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, f"REVOCAST_IDP_{name}": value}
    with pytest.raises(SettingsError, match=f"(?i){name}"):
        IdentitySettings.from_env(environ=env)
