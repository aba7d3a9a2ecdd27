"""Transmitter keys: discovery through the SSF configuration, rotation, refresh, failures."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from joserfc.jwk import ECKey, RSAKey
from starlette.testclient import TestClient

from receiver import DeliveryUnavailable, Receiver, SetRejected
from receiver._keys import KeySource
from tests.receiver._support import RISC, TRANSMITTER, FakeClock, Key, Transmitter
from tests.receiver.conftest import Push

METADATA = "https://tx.example.com/.well-known/ssf-configuration/ssf"
# Beside a key under test, so the set has a usable key (a set without one is kept out).
USABLE = ECKey.generate_key("P-256", parameters={"kid": "usable"}).as_dict(private=False)


def _source(transmitter: Transmitter, clock: FakeClock, http: httpx.Client) -> KeySource:
    return KeySource(
        issuer=TRANSMITTER,
        metadata_url=METADATA,
        jwks_uri=None,
        client=http,
        max_age=3600,
        min_refresh_interval=30,
        clock=clock.monotonic,
    )


def test_rotated_in_key_is_fetched_on_first_use(transmitter: Transmitter, clock: FakeClock) -> None:
    with transmitter.client() as http:
        keys = _source(transmitter, clock, http)
        keys.keys("ec-1", "ES256")
        transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "ec-2"}))
        clock.advance(31)

        (key,) = keys.keys("ec-2", "ES256")

    assert key.algorithm_name == "ES256"
    assert transmitter.jwks_requests == 2


def test_keys_older_than_max_age_are_refetched(transmitter: Transmitter, clock: FakeClock) -> None:
    with transmitter.client() as http:
        keys = _source(transmitter, clock, http)
        keys.keys("ec-1", "ES256")
        clock.advance(3601)
        keys.keys("ec-1", "ES256")

    assert transmitter.jwks_requests == 2


def test_stale_keys_keep_working_while_the_transmitter_is_down(
    transmitter: Transmitter, clock: FakeClock
) -> None:
    with transmitter.client() as http:
        keys = _source(transmitter, clock, http)
        keys.keys("ec-1", "ES256")
        transmitter.down = True
        clock.advance(3601)

        assert keys.keys("ec-1", "ES256")[0].algorithm_name == "ES256"


def test_no_keys_at_all_is_transient_not_a_rejection(
    transmitter: Transmitter, clock: FakeClock
) -> None:
    transmitter.down = True
    with transmitter.client() as http, pytest.raises(DeliveryUnavailable):
        _source(transmitter, clock, http).keys("ec-1", "ES256")


def test_configuration_naming_another_issuer_is_not_trusted(clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json={"issuer": "https://evil.example.com", "jwks_uri": "https://evil/jwks"}
        )

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=METADATA, jwks_uri=None, client=http)
        with pytest.raises(DeliveryUnavailable, match="evil"):
            keys.refresh()


@pytest.mark.parametrize(
    ("kid", "alg"),
    [("ec-1", "RS256"), ("rsa-1", "ES256"), ("rsa-1", "EdDSA"), ("ed-1", "ES256")],
)
def test_key_of_another_family_than_the_token_alg_is_refused(
    kid: str, alg: str, transmitter: Transmitter, clock: FakeClock
) -> None:
    with transmitter.client() as http, pytest.raises(SetRejected) as caught:
        _source(transmitter, clock, http).keys(kid, alg)

    assert caught.value.code == "invalid_key"


def test_key_pinned_to_another_alg_by_its_jwk_is_refused(
    transmitter: Transmitter, clock: FakeClock
) -> None:
    transmitter.add_key(RSAKey.generate_key(2048, parameters={"kid": "ps", "alg": "PS256"}))
    with transmitter.client() as http, pytest.raises(SetRejected) as caught:
        _source(transmitter, clock, http).keys("ps", "RS256")

    assert caught.value.code == "invalid_key"


def test_encryption_key_is_not_used_to_verify(transmitter: Transmitter, clock: FakeClock) -> None:
    transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "enc", "use": "enc"}))
    with transmitter.client() as http, pytest.raises(SetRejected):
        _source(transmitter, clock, http).keys("enc", "ES256")


@pytest.mark.parametrize("ops", [["encrypt", "wrapKey"], ["sign"], "verify"], ids=repr)
def test_key_whose_key_ops_do_not_include_verify_is_not_used_to_verify(
    ops: object, clock: FakeClock
) -> None:
    # The use member was checked but key_ops, its RFC 7517 counterpart, was ignored.
    key = ECKey.generate_key("P-256", parameters={"kid": "ops"}).as_dict(private=False)
    jwks = {"keys": [{**key, "key_ops": ops}, USABLE]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri="https://j", client=http)
        with pytest.raises(SetRejected, match="not a signing key"):
            keys.keys("ops", "ES256")


def test_key_whose_key_ops_include_verify_is_used(clock: FakeClock) -> None:
    key = ECKey.generate_key("P-256", parameters={"kid": "ops"}).as_dict(private=False)
    jwks = {"keys": [{**key, "key_ops": ["verify"]}]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri="https://j", client=http)
        (found,) = keys.keys("ops", "ES256")

    assert found.key_id == "ops"


def test_symmetric_key_in_the_jwks_is_never_used(clock: FakeClock) -> None:
    jwks = {"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}, USABLE]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri="https://j", client=http)
        with pytest.raises(SetRejected, match="not accepted"):
            keys.keys("h", "ES256")


def test_kidless_set_is_accepted_only_when_the_jwks_has_one_key(clock: FakeClock) -> None:
    single = ECKey.generate_key("P-256")
    jwks = {"keys": [single.as_dict(private=False)]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri="https://j", client=http)
        assert keys.keys(None, "ES256")[0].algorithm_name == "ES256"


def test_set_signed_with_a_rotated_key_is_published(
    transmitter: Transmitter, clock: FakeClock, receiver: object
) -> None:
    from receiver import Receiver

    assert isinstance(receiver, Receiver)
    transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "ec-new"}))
    clock.advance(31)

    receipt = receiver.receive_set(
        transmitter.set(
            f"{RISC}account-disabled", sub_id={"format": "opaque", "id": "u"}, kid="ec-new"
        )
    )

    assert receipt.outcome == "published"


def test_https_configuration_naming_a_plain_http_jwks_uri_is_not_trusted(
    transmitter: Transmitter, clock: FakeClock
) -> None:
    # A downgrade: whoever sits on the network path could serve their own keys over http
    # and sign SETs that block or revoke anyone.
    fetched: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        fetched.append(str(request.url))
        if request.url.path == "/jwks":
            return httpx.Response(200, json=transmitter.jwks())
        return httpx.Response(
            200, json={"issuer": TRANSMITTER, "jwks_uri": "http://tx.example.com/jwks"}
        )

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=METADATA, jwks_uri=None, client=http)
        with pytest.raises(DeliveryUnavailable, match="https"):
            keys.refresh()

    assert fetched == [METADATA]


def test_oversized_key_document_is_not_read_whole(clock: FakeClock) -> None:
    # A misbehaving key server must not make the receiver buffer an unbounded body.
    served: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(64):  # 64 MiB if read to the end
            served.append(1)
            yield b" " * (1024 * 1024)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri=METADATA, client=http)
        with pytest.raises(DeliveryUnavailable, match="larger"):
            keys.refresh()

    assert len(served) < 64


def test_a_key_document_dripped_slower_than_the_timeout_in_all_is_given_up(
    clock: FakeClock,
) -> None:
    # Each chunk arrives within the client's read timeout, the whole never would.
    served: list[int] = []

    def body() -> Iterator[bytes]:
        for _ in range(100):
            served.append(1)
            clock.advance(4)  # under a 10 s read timeout, 400 s in all
            yield b" "

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body())

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(
            issuer=TRANSMITTER,
            metadata_url=None,
            jwks_uri=METADATA,
            client=http,
            wait_timeout=10.0,
            clock=clock.monotonic,
        )
        with pytest.raises(DeliveryUnavailable, match="not read within"):
            keys.refresh()

    assert len(served) <= 4


def test_set_signed_with_a_key_newer_than_our_copy_is_retried_not_refused(
    transmitter: Transmitter, clock: FakeClock, receiver: object
) -> None:
    # The keys were fetched 10 s ago (startup), so the unknown kid cannot be refetched yet.
    # The SET was issued after that fetch: its key may simply be newer than our copy, and a
    # permanent invalid_key would make the transmitter drop a genuine revocation.
    from receiver import Receiver

    assert isinstance(receiver, Receiver)
    clock.advance(10)
    transmitter.add_key(ECKey.generate_key("P-256", parameters={"kid": "ec-new"}))
    token = transmitter.set(
        f"{RISC}account-disabled", sub_id={"format": "opaque", "id": "u"}, kid="ec-new"
    )

    with pytest.raises(DeliveryUnavailable):
        receiver.receive_set(token)
    clock.advance(21)  # past the refetch interval: the transmitter's retry gets through

    assert receiver.receive_set(token).outcome == "published"


@pytest.mark.parametrize("pair", ["an RSA and an EC key", "two EC keys"])
def test_jwks_giving_one_kid_to_two_keys_verifies_sets_signed_with_either(
    pair: str,
    transmitter: Transmitter,
    clock: FakeClock,
    receiver: object,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 7517 4.5 allows one kid for keys of different types (and a sloppy rotation reuses
    # one for two keys of a type). Keeping only the last key of a kid refused every SET
    # signed with the other (invalid_key or authentication_failed), and the transmitter
    # dropped those revocations.
    from receiver import Receiver

    assert isinstance(receiver, Receiver)
    first: Key = (
        RSAKey.generate_key(2048, parameters={"kid": "shared"})
        if pair.startswith("an RSA")
        else ECKey.generate_key("P-256", parameters={"kid": "shared"})
    )
    second = ECKey.generate_key("P-256", parameters={"kid": "shared"})
    jwks = {"keys": [k.as_dict(private=False) for k in (first, second)]}
    monkeypatch.setattr(transmitter, "jwks", lambda: jwks)
    clock.advance(31)
    user = {"format": "opaque", "id": "u"}

    outcomes = []
    for key in (first, second):
        transmitter.keys["shared"] = key
        token = transmitter.set(f"{RISC}account-disabled", sub_id=user, kid="shared")
        outcomes.append(receiver.receive_set(token).outcome)

    assert outcomes == ["published", "published"]


def test_kidless_set_is_refused_when_the_jwks_has_two_kidless_keys(clock: FakeClock) -> None:
    # Both keys used to collapse into one entry (kid ""), so the "exactly one key" rule
    # picked the last of them as if it were unambiguous.
    two = [ECKey.generate_key("P-256").as_dict(private=False) for _ in range(2)]
    jwks = {"keys": [{k: v for k, v in jwk.items() if k != "kid"} for jwk in two]}

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=jwks)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        keys = KeySource(issuer=TRANSMITTER, metadata_url=None, jwks_uri="https://j", client=http)
        with pytest.raises(SetRejected) as caught:
            keys.keys(None, "ES256")

    assert caught.value.code == "invalid_key"


class _Switchable:
    """A JWK set endpoint whose answer the test replaces."""

    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.failures: list[str] = []

    def source(self, http: httpx.Client, clock: FakeClock) -> KeySource:
        return KeySource(
            issuer=TRANSMITTER,
            metadata_url=None,
            jwks_uri="https://tx.example.com/jwks",
            client=http,
            max_age=3600,
            min_refresh_interval=30,
            clock=clock.monotonic,
            on_refresh_failure=self.failures.append,
        )

    def client(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.MockTransport(lambda request: httpx.Response(200, json=self.jwks))
        )


GOOD = ECKey.generate_key("P-256", parameters={"kid": "ec-1"})
UNUSABLE_SETS = {
    "empty": {"keys": []},
    "only unusable keys": {
        "keys": [
            {"kty": "oct", "kid": "h", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
            {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "e", "use": "enc"},
            {"kty": "RSA", "kid": "broken", "e": "AQAB"},  # no modulus
            "not a key",
        ]
    },
}


@pytest.mark.parametrize("unusable", UNUSABLE_SETS.values(), ids=UNUSABLE_SETS.keys())
def test_key_set_without_a_usable_key_keeps_the_last_good_keys_warns_and_counts(
    unusable: dict[str, Any], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    # The whole set used to be replaced: every SET then failed (invalid_key, a permanent
    # refusal the transmitter does not retry) until the key server was fixed.
    endpoint = _Switchable({"keys": [GOOD.as_dict(private=False)]})
    with endpoint.client() as http:
        keys = endpoint.source(http, clock)
        keys.keys("ec-1", "ES256")
        endpoint.jwks = unusable
        clock.advance(3601)

        with caplog.at_level(logging.WARNING, logger="receiver.keys"):
            (key,) = keys.keys("ec-1", "ES256")

    assert key.key_id == "ec-1"
    assert endpoint.failures == ["no_usable_key"]
    assert "keeping the last good keys" in caplog.text


def test_last_good_keys_are_trusted_only_max_age_after_the_key_set_emptied(
    clock: FakeClock,
) -> None:
    endpoint = _Switchable({"keys": [GOOD.as_dict(private=False)]})
    with endpoint.client() as http:
        keys = endpoint.source(http, clock)
        keys.keys("ec-1", "ES256")
        endpoint.jwks = {"keys": []}
        clock.advance(3601)
        keys.keys("ec-1", "ES256")  # the first empty answer: still trusted
        clock.advance(3600)
        keys.keys("ec-1", "ES256")
        clock.advance(1)

        # Withdrawn keys are "retry later", never a refusal: the SET is not lost.
        with pytest.raises(DeliveryUnavailable, match="no usable key for over 3600s"):
            keys.keys("ec-1", "ES256")
        endpoint.jwks = {"keys": [GOOD.as_dict(private=False)]}
        clock.advance(31)
        assert keys.keys("ec-1", "ES256")[0].key_id == "ec-1"


def test_key_set_without_a_usable_key_at_startup_is_transient_not_invalid_key(
    clock: FakeClock,
) -> None:
    endpoint = _Switchable({"keys": []})
    with endpoint.client() as http:
        keys = endpoint.source(http, clock)
        with pytest.raises(DeliveryUnavailable, match="no usable signing key"):
            keys.refresh()
        with pytest.raises(DeliveryUnavailable):
            keys.keys("ec-1", "ES256")

    assert endpoint.failures == ["no_usable_key"]


def test_set_pushed_while_the_key_set_is_empty_is_published_and_the_failure_counted(
    transmitter: Transmitter, clock: FakeClock, receiver: Receiver, client: TestClient
) -> None:
    transmitter.published_kids.clear()  # the key endpoint now answers {"keys": []}
    clock.advance(3601)  # our copy is due for a refresh

    response = Push(client)(
        transmitter.set(f"{RISC}account-disabled", sub_id={"format": "opaque", "id": "u"})
    )

    assert response.status_code == 202
    metrics = client.get("/metrics").text
    assert (
        'revocast_receiver_key_refresh_failures_total{source="set",reason="no_usable_key"} 1'
        in metrics
    )
