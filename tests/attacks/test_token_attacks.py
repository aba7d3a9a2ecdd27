"""The token-attack corpus through ``Revocast.verify()``: every attack is refused with its
typed error, and a well-formed token from the same keys is accepted (so a verifier that
refused everything would fail here)."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest

from consumer_sdk import Revocast, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from revocation_events import TokenRevoked
from tests.attacks._tokens import ATTACKS, Attack, attack_settings, good_token
from tests.consumer_sdk._helpers import dt
from tests.faults._figures import record_figures


@pytest.fixture(scope="module")
def rc() -> Iterator[Revocast]:
    src = InMemorySource()
    with Revocast(attack_settings(), source=src) as client:
        src.set_ready()
        src.publish(TokenRevoked(issuer="idp", jti="revoked", expires_at=dt(2**33)))
        yield client


@pytest.fixture(scope="module")
def tally() -> Iterator[dict[str, int]]:
    counts = {"tried": 0, "accepted": 0}
    yield counts
    record_figures(
        "token_attacks_verify", attacks_tried=counts["tried"], accepted=counts["accepted"]
    )


def test_well_formed_token_from_the_same_keys_is_accepted(rc: Revocast) -> None:
    assert rc.verify(good_token())["sub"] == "alice"


def test_revoked_token_is_refused_before_any_attack_on_it(rc: Revocast) -> None:
    with pytest.raises(TokenRevokedError):
        rc.verify(good_token(jti="revoked"))


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack_is_refused_with_its_typed_error(
    rc: Revocast, attack: Attack, tally: dict[str, int]
) -> None:
    token = attack.build()
    tally["tried"] += 1
    tally["accepted"] += 1  # taken back below once refused
    with pytest.raises(jwt.InvalidTokenError) as refused:
        rc.verify(token)
    tally["accepted"] -= 1
    assert type(refused.value) is attack.refused_with, repr(refused.value)
