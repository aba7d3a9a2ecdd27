"""Security regressions, each named after the attack it stops."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest
from cryptography.hazmat.primitives import serialization
from joserfc.jwk import ECKey

from receiver import Receiver, RecordingSink, SetRejected
from tests.receiver._support import (
    AUDIENCE,
    CLIENT_ID,
    OP,
    RISC,
    START,
    TRANSMITTER,
    FakeClock,
    Transmitter,
    b64,
    unsigned_jwt,
)
from tests.receiver.conftest import Push

USER = {"format": "opaque", "id": "victim"}


def _claims() -> dict[str, object]:
    return {
        "iss": TRANSMITTER,
        "aud": AUDIENCE,
        "iat": int(START.timestamp()),
        "jti": "attack-1",
        "events": {f"{RISC}account-enabled": {}},
        "sub_id": USER,
    }


def test_alg_none_set_is_refused(push: Push, sink: RecordingSink) -> None:
    token = unsigned_jwt({"alg": "none", "typ": "secevent+jwt", "kid": "ec-1"}, _claims(), b"")

    response = push(token)

    assert (response.status_code, response.json()["err"]) == (400, "invalid_key")
    assert sink.events == []


def test_hs256_signed_with_the_transmitters_public_key_is_refused(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # Key confusion: verify an HMAC with the RSA public key's bytes as the secret.
    public = transmitter.keys["rsa-1"].as_dict(private=False)
    pem = transmitter.keys["rsa-1"].public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "secevent+jwt", "kid": public["kid"]}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(_claims()).encode())}"
    signature = hmac.digest(pem, signing_input.encode(), hashlib.sha256)

    response = push(f"{signing_input}.{b64(signature)}")

    assert (response.status_code, response.json()["err"]) == (400, "invalid_key")
    assert sink.events == []


def test_set_signed_by_the_attackers_own_key_with_a_known_kid_is_refused(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    attacker = Transmitter(transmitter.clock)
    attacker.keys["ec-1"] = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})

    response = push(attacker.set(f"{RISC}account-enabled", {}, sub_id=USER))

    assert (response.status_code, response.json()["err"]) == (400, "authentication_failed")
    assert sink.events == []


def test_jwk_header_injection_does_not_make_the_embedded_key_trusted(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    attacker_key = ECKey.generate_key("P-256", parameters={"kid": "evil"})
    header = {
        "alg": "ES256",
        "typ": "secevent+jwt",
        "kid": "evil",
        "jwk": attacker_key.as_dict(private=False),
    }
    from joserfc import jwt

    token = jwt.encode(header, _claims(), attacker_key)

    response = push(token)

    assert (response.status_code, response.json()["err"]) == (400, "invalid_key")
    assert sink.events == []


def test_signature_stripping_by_editing_the_payload_is_refused(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    head, _, sig = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER).split(".")
    forged = {**_claims(), "events": {f"{RISC}account-enabled": {}}}

    response = push(f"{head}.{b64(json.dumps(forged).encode())}.{sig}")

    assert (response.status_code, response.json()["err"]) == (400, "authentication_failed")
    assert sink.events == []


def test_logout_token_replayed_as_a_set_is_refused(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.logout_token(sid="s-1", iss=TRANSMITTER, aud=AUDIENCE)

    response = push(token)

    assert (response.status_code, response.json()["err"]) == (400, "invalid_request")
    assert sink.events == []


def test_set_replayed_as_a_logout_token_is_refused(
    client: object, transmitter: Transmitter, sink: RecordingSink
) -> None:
    from starlette.testclient import TestClient

    assert isinstance(client, TestClient)
    token = transmitter.set(
        "http://schemas.openid.net/event/backchannel-logout", {}, iss=OP, aud=CLIENT_ID, sid="s"
    )

    response = client.post("/oidc/backchannel-logout", data={"logout_token": token})

    assert response.status_code == 400
    assert sink.events == []


def test_unknown_kid_flood_refetches_keys_at_most_once_per_interval(
    receiver: Receiver, transmitter: Transmitter, clock: FakeClock
) -> None:
    transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "ghost"}), publish=False)
    clock.advance(31)  # past the refetch interval of the startup fetch
    before = transmitter.jwks_requests

    def flood() -> int:
        for _ in range(50):
            with pytest.raises(SetRejected) as caught:
                receiver.receive_set(transmitter.set(f"{RISC}account-enabled", kid="ghost"))
            assert caught.value.code == "invalid_key"
        return transmitter.jwks_requests - before

    first = flood()
    clock.advance(31)
    second = flood()

    assert (first, second) == (1, 2)


def test_set_replayed_a_week_later_is_still_published_once(
    push: Push, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    token = transmitter.set(f"{RISC}account-enabled", {}, sub_id=USER)
    push(token)
    clock.advance(7 * 86_400)

    assert push(token).status_code == 202
    assert len(sink.events) == 1


def test_set_replayed_after_the_dedupe_window_does_not_lift_a_later_block(
    push: Push, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    enabled = transmitter.set(f"{RISC}account-enabled", {}, sub_id=USER)
    assert push(enabled).status_code == 202
    clock.advance(20 * 86_400)  # past the 14-day dedupe retention: the jti is forgotten
    assert push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)).status_code == 202

    response = push(enabled)

    assert response.status_code == 400
    assert response.json()["err"] == "invalid_request"
    assert [type(e).__name__ for e in sink.events] == ["SubjectUnblocked", "SubjectBlocked"]


def test_set_with_claims_nested_past_the_recursion_limit_is_400_not_500(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # A correctly signed SET whose JSON is nested ~5000 deep: json.loads raises
    # RecursionError, which must not escape as a 500 (or kill a poll batch).
    from joserfc import jws

    claims = json.dumps(_claims())[:-1] + ', "x": ' + "[" * 5000 + "]" * 5000 + "}"
    header = {"alg": "ES256", "kid": "ec-1", "typ": "secevent+jwt"}
    token = jws.serialize_compact(header, claims.encode(), transmitter.keys["ec-1"])

    response = push(token)

    assert (response.status_code, response.json()["err"]) == (400, "invalid_request")
    assert sink.events == []


@pytest.mark.parametrize("iat", [10**400, float("inf"), "soon", [1]], ids=repr)
def test_unsigned_token_with_an_absurd_iat_and_unknown_kid_is_refused_not_a_500(
    push: Push, sink: RecordingSink, iat: object
) -> None:
    # The iat is read before the signature is checked (to tell a newer key from a bogus
    # one): whatever it holds must not crash the request.
    claims = {**_claims(), "iat": 0}
    body = json.dumps(claims).replace('"iat": 0', f'"iat": {json.dumps(iat)}')
    head = b64(json.dumps({"alg": "ES256", "typ": "secevent+jwt", "kid": "nobody"}).encode())

    response = push(f"{head}.{b64(body.encode())}.{b64(b'x' * 64)}")

    assert response.status_code in (400, 503)
    assert sink.events == []


def _alias_flood(count: int) -> dict[str, object]:
    ids = [{"format": "opaque", "id": f"u{i}"} for i in range(count)]
    return {"format": "aliases", "identifiers": ids}


def test_alias_flood_set_is_refused_whole_not_published_in_part(
    push: Push, transmitter: Transmitter, sink: RecordingSink, receiver: Receiver
) -> None:
    # One SET within MAX_TOKEN_BYTES can list a thousand aliases: a thousand rules on the
    # topic, one by one, for one request. Cutting the list short would leave the rest's
    # tokens valid while the transmitter counts the SET delivered.
    flood = transmitter.set(f"{RISC}account-disabled", {}, sub_id=_alias_flood(1000))

    response = push(flood)

    assert (response.status_code, response.json()["err"]) == (400, "invalid_request")
    assert "aliases" in response.json()["description"]
    assert sink.events == []
    counted = receiver.metrics.snapshot()
    assert counted[(f"{RISC}account-disabled", "rejected:invalid_request")] == 1
    assert "aliases" in (receiver.status().last_error or "")


def test_aliases_up_to_the_bound_are_each_published(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=_alias_flood(32))

    assert push(token).status_code == 202
    assert sorted(str(e.subject()) for e in sink.events) == sorted(f"u{i}" for i in range(32))
