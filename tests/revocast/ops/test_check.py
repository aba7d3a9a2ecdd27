"""``revocast check``'s report on one token, without Kafka."""

from __future__ import annotations

import base64
import json

import pytest

from consumer_sdk import RevocationState
from revocast.ops import check_token


def _unsigned(payload: str) -> str:
    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    return f"{part(json.dumps({'alg': 'HS256'}))}.{part(payload)}.c2ln"


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub": "a", "exp": 1e20}',
        '{"sub": "a", "exp": -1e300}',
        '{"sub": "a", "exp": Infinity}',
        '{"sub": "a", "exp": NaN}',
        '{"sub": "a", "exp": 1, "iat": 1e300, "nbf": -Infinity}',
    ],
)
def test_a_time_claim_out_of_range_is_shown_rather_than_crashing(payload: str) -> None:
    state = RevocationState(clock=lambda: 1000.0, max_token_lifetime=3600)
    rendered = check_token(_unsigned(payload), state, now=1000.0).render()
    assert "(out of range)" in rendered
    assert "verdict:" in rendered
