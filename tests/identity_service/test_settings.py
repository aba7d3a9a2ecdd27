from __future__ import annotations

import math

import pytest

from identity_service import IdentitySettings
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
