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
