"""OIDC Back-Channel Logout 1.0: form-posted logout tokens, 200 / 400, never cached."""

from __future__ import annotations

from typing import Any

import pytest
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from receiver import Receiver, RecordingSink, SetRejected
from tests.receiver._support import (
    CLIENT_ID,
    LOGOUT,
    OP,
    RISC,
    START,
    FakeClock,
    HttpResponse,
    Transmitter,
)
from tests.receiver.conftest import LIFETIME

NOW = int(START.timestamp())


def _post(client: TestClient, token: str) -> HttpResponse:
    return client.post("/oidc/backchannel-logout", data={"logout_token": token})


def test_logout_with_sid_revokes_the_session_and_answers_200_no_store(
    client: TestClient, transmitter: Transmitter, sink: RecordingSink
) -> None:
    response = _post(client, transmitter.logout_token(sid="op-session-1", sub="user-1"))

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    (event,) = sink.events
    assert event.model_dump(include={"type", "sid", "sub", "expires_at", "reason"}) == {
        "type": "session.revoked",
        "sid": "op-session-1",
        "sub": "user-1",
        "expires_at": START + LIFETIME,
        "reason": "oidc:backchannel-logout",
    }


def test_logout_with_only_sub_revokes_the_subjects_tokens_issued_before_it(
    client: TestClient, transmitter: Transmitter, sink: RecordingSink
) -> None:
    assert _post(client, transmitter.logout_token(sub="user-1")).status_code == 200

    (event,) = sink.events
    assert event.model_dump(include={"type", "sub", "issued_before"}) == {
        "type": "subject.tokens_revoked",
        "sub": "user-1",
        "issued_before": START,
    }


INVALID: dict[str, dict[str, Any]] = {
    "expired": {"sid": "s", "iat": NOW - 400, "exp": NOW - 200},
    "nonce-bearing (an ID token)": {"sid": "s", "nonce": "n-0S6_WzA2Mj"},
    "wrongly typed as JWT": {"sid": "s", "typ": "JWT"},
    "wrongly typed as a SET": {"sid": "s", "typ": "secevent+jwt"},
    "without exp": {"sid": "s", "omit": ("exp",)},
    "without iat": {"sid": "s", "omit": ("iat",)},
    "without jti": {"sid": "s", "omit": ("jti",)},
    "without sid or sub": {},
    "without the logout event": {"sid": "s", "events": {"http://example.com/other": {}}},
    "logout event not an object": {"sid": "s", "events": {LOGOUT: "yes"}},
    "wrong issuer": {"sid": "s", "iss": "https://evil.example.com"},
    "wrong audience": {"sid": "s", "aud": "someone-else"},
    "issued too long ago": {"sid": "s", "iat": NOW - 3600, "exp": NOW + 60},
    "issued in the future": {"sid": "s", "iat": NOW + 3600, "exp": NOW + 7200},
}


@pytest.mark.parametrize("claims", INVALID.values(), ids=INVALID.keys())
def test_invalid_logout_token_is_400_invalid_request_and_publishes_nothing(
    claims: dict[str, Any], client: TestClient, transmitter: Transmitter, sink: RecordingSink
) -> None:
    response = _post(client, transmitter.logout_token(**claims))

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert response.headers["cache-control"] == "no-store"
    assert sink.events == []


def test_logout_token_within_clock_leeway_after_exp_is_accepted(
    client: TestClient, transmitter: Transmitter, clock: FakeClock
) -> None:
    token = transmitter.logout_token(sid="s")
    clock.advance(120 + 30)  # exp passed 30 s ago, leeway is 60 s

    assert _post(client, token).status_code == 200


def test_replayed_logout_token_publishes_once(
    client: TestClient, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.logout_token(sid="s")

    assert [_post(client, token).status_code for _ in range(2)] == [200, 200]
    assert len(sink.events) == 1


def test_missing_logout_token_parameter_is_400(client: TestClient) -> None:
    response = client.post("/oidc/backchannel-logout", data={"token": "x"})

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_logout_token_as_json_body_is_400(client: TestClient, transmitter: Transmitter) -> None:
    response = client.post(
        "/oidc/backchannel-logout", json={"logout_token": transmitter.logout_token(sid="s")}
    )

    assert response.status_code == 400


def test_logout_publish_failure_is_503_no_store(
    client: TestClient, transmitter: Transmitter, sink: RecordingSink
) -> None:
    sink.fail_with = RuntimeError("kafka down")

    response = _post(client, transmitter.logout_token(sid="s"))

    assert response.status_code == 503
    assert response.headers["cache-control"] == "no-store"


def test_logout_keys_come_from_the_providers_openid_configuration(
    client: TestClient, transmitter: Transmitter
) -> None:
    token = transmitter.logout_token(sid="s", kid="rsa-1", aud=[CLIENT_ID, "other"], iss=OP)

    assert _post(client, token).status_code == 200


def test_anyones_bad_logout_tokens_do_not_overwrite_the_ssf_stream_error(
    client: TestClient, receiver: Receiver, transmitter: Transmitter
) -> None:
    # The logout endpoint takes tokens from anyone: their failures must not hide the last
    # genuine SSF error that /ssf/status shows the operator.
    with pytest.raises(SetRejected):
        receiver.receive_set(transmitter.set(f"{RISC}account-disabled", aud="https://other"))
    ssf_error = client.get("/ssf/status").json()["last_error"]

    transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "ghost"}), publish=False)
    forged = transmitter.logout_token(sid="s", kid="ghost", iat=NOW + 30)
    for token in ("junk", transmitter.logout_token(sid="s", iss="https://evil"), forged):
        assert _post(client, token).status_code in (400, 503)

    assert ssf_error is not None
    assert client.get("/ssf/status").json()["last_error"] == ssf_error
