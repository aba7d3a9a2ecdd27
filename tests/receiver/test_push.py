"""RFC 8935 push delivery: status codes, error bodies, bearer authorization, deduplication."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from joserfc.jwk import ECKey
from starlette.testclient import TestClient

from receiver import Receiver, ReceiverError, ReceiverSettings, RecordingSink, create_app
from tests.receiver._support import (
    AUDIENCE,
    CAEP,
    RISC,
    SSF,
    START,
    TRANSMITTER,
    FakeClock,
    Transmitter,
)
from tests.receiver.conftest import LIFETIME, Push

USER = {"format": "opaque", "id": "user-1"}


def test_accepted_set_gets_202_with_an_empty_body(push: Push, transmitter: Transmitter) -> None:
    response = push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER))

    assert (response.status_code, response.content) == (202, b"")


REJECTIONS: dict[str, tuple[str, Callable[[Transmitter], str]]] = {
    "wrong issuer": (
        "invalid_issuer",
        lambda t: t.set(f"{RISC}account-enabled", iss="https://evil"),
    ),
    "wrong audience": (
        "invalid_audience",
        lambda t: t.set(f"{RISC}account-enabled", aud="https://other-receiver"),
    ),
    "unknown kid": ("invalid_key", lambda t: _unpublished_key_set(t)),
    "two events in one SET": (
        "invalid_request",
        lambda t: t.set(
            f"{RISC}account-enabled",
            events={f"{RISC}account-enabled": {}, f"{RISC}account-purged": {}},
        ),
    ),
    "no jti": ("invalid_request", lambda t: t.set(f"{RISC}account-enabled", omit=("jti",))),
    "empty jti": ("invalid_request", lambda t: t.set(f"{RISC}account-enabled", jti="")),
    "no iat": ("invalid_request", lambda t: t.set(f"{RISC}account-enabled", omit=("iat",))),
    "no events claim": (
        "invalid_request",
        lambda t: t.set(f"{RISC}account-enabled", omit=("events",)),
    ),
    "iat in the future": (
        "invalid_request",
        lambda t: t.set(f"{RISC}account-enabled", iat=int(START.timestamp()) + 3600),
    ),
    "event payload not an object": (
        "invalid_request",
        lambda t: t.set(f"{RISC}account-enabled", events={f"{RISC}account-enabled": "x"}),
    ),
    "subject without format": (
        "invalid_request",
        lambda t: t.set(f"{RISC}account-enabled", sub_id={"id": "user-1"}),
    ),
    "typ JWT": ("invalid_request", lambda t: t.set(f"{RISC}account-enabled", typ="JWT")),
    "not a JWT": ("invalid_request", lambda t: "hello"),
    "subject from an issuer the stream may not speak for": (
        "access_denied",
        lambda t: t.set(
            f"{RISC}account-disabled",
            sub_id={"format": "iss_sub", "iss": "https://other-idp", "sub": "u"},
        ),
    ),
    "unblock of a subject naming no issuer while SUBJECT_ISSUERS is set": (
        "access_denied",
        lambda t: t.set(f"{RISC}account-enabled", sub_id={"format": "opaque", "id": "u"}),
    ),
    "unblock of aliases one of which names no issuer": (
        "access_denied",
        lambda t: t.set(
            f"{RISC}account-enabled",
            sub_id={
                "format": "aliases",
                "identifiers": [
                    {"format": "iss_sub", "iss": "https://idp.example.com", "sub": "u"},
                    {"format": "opaque", "id": "u2"},
                ],
            },
        ),
    ),
    "unblock of a complex subject whose user names no issuer": (
        "access_denied",
        lambda t: t.set(
            f"{RISC}account-enabled",
            sub_id={
                "format": "complex",
                "user": {"format": "opaque", "id": "u"},
                "session": {"format": "iss_sub", "iss": "https://idp.example.com", "sub": "s"},
            },
        ),
    ),
}


def _unpublished_key_set(t: Transmitter) -> str:
    t.add_key(ECKey.generate_key("P-256", parameters={"kid": "ec-unpublished"}), publish=False)
    return t.set(f"{RISC}account-enabled", kid="ec-unpublished")


@pytest.mark.parametrize(("code", "mint"), REJECTIONS.values(), ids=REJECTIONS.keys())
def test_bad_set_is_refused_with_its_rfc8935_error_code(
    code: str,
    mint: Callable[[Transmitter], str],
    settings: ReceiverSettings,
    transmitter: Transmitter,
    sink: RecordingSink,
    clock: FakeClock,
) -> None:
    assert settings.transmitter is not None
    limited = replace(
        settings,
        transmitter=replace(settings.transmitter, subject_issuers=("https://idp.example.com",)),
    )
    token = mint(transmitter)
    with (
        transmitter.client() as http,
        Receiver(
            settings=limited,
            sink=sink,
            max_token_lifetime=LIFETIME,
            http_client=http,
            clock=clock,
            monotonic=clock.monotonic,
        ) as receiver,
        TestClient(create_app(receiver)) as client,
    ):
        response = Push(client)(token)

    assert response.status_code == 400
    assert response.json()["err"] == code
    assert response.json()["description"]
    assert sink.events == []


def test_missing_bearer_token_is_401_authentication_failed(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    response = push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER), bearer=None)

    assert response.status_code == 401
    assert response.json()["err"] == "authentication_failed"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert sink.events == []


def test_wrong_bearer_token_is_401_and_publishes_nothing(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)

    assert push(token, bearer="push-token-0123456789abcdeX").status_code == 401
    assert sink.events == []


def test_wrong_content_type_is_invalid_request(push: Push, transmitter: Transmitter) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)

    response = push(token, content_type="application/json")

    assert (response.status_code, response.json()["err"]) == (400, "invalid_request")


def test_oversized_body_is_invalid_request_without_reading_it_all(push: Push) -> None:
    response = push("a" * (64 * 1024 + 1))

    assert (response.status_code, response.json()["err"]) == (400, "invalid_request")


def test_replayed_set_is_acknowledged_but_published_once(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)

    assert [push(token).status_code for _ in range(3)] == [202, 202, 202]
    assert len(sink.events) == 1


def test_replayed_set_is_published_once_across_a_restart_on_the_same_dedupe_db(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)
    codes = []
    for _ in range(2):  # two app lifetimes sharing only the SQLite file
        with (
            transmitter.client() as http,
            Receiver(
                settings=settings,
                sink=sink,
                max_token_lifetime=LIFETIME,
                http_client=http,
                clock=clock,
            ) as receiver,
            TestClient(create_app(receiver)) as client,
        ):
            codes.append(Push(client)(token).status_code)

    assert codes == [202, 202]
    assert len(sink.events) == 1


def test_publish_failure_answers_503_and_the_redelivered_set_publishes(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER)
    sink.fail_with = OSError("broker unreachable")

    first = push(token)
    sink.fail_with = None
    second = push(token)

    assert (first.status_code, first.headers["retry-after"]) == (503, "5")
    assert second.status_code == 202
    assert len(sink.events) == 1


def test_keys_unreachable_answers_503_not_a_permanent_400(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    transmitter.down = True
    with (
        transmitter.client() as http,
        Receiver(
            settings=settings, sink=sink, max_token_lifetime=LIFETIME, http_client=http, clock=clock
        ) as receiver,
        TestClient(create_app(receiver)) as client,
    ):
        response = Push(client)(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER))

    assert response.status_code == 503


def test_push_endpoint_is_off_when_no_push_token_is_configured(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink
) -> None:
    assert settings.transmitter is not None
    no_push = replace(settings, transmitter=replace(settings.transmitter, push_tokens=()))
    with (
        transmitter.client() as http,
        Receiver(settings=no_push, sink=sink, max_token_lifetime=LIFETIME, http_client=http) as r,
        TestClient(create_app(r)) as client,
    ):
        response = Push(client)(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER))

    assert response.status_code == 404
    assert sink.events == []


def test_every_algorithm_family_of_the_transmitter_verifies(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    codes = [
        push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER, kid=kid)).status_code
        for kid in ("rsa-1", "ec-1", "ed-1")
    ]

    assert codes == [202, 202, 202]
    assert len(sink.events) == 3


def test_rejections_are_counted_by_error_code(push: Push, client: TestClient) -> None:
    push("not-a-set")

    assert 'outcome="rejected:invalid_request"} 1' in client.get("/metrics").text


def test_verification_event_is_acknowledged_and_its_state_reported(
    push: Push, transmitter: Transmitter, client: TestClient, sink: RecordingSink
) -> None:
    token = transmitter.set(
        f"{SSF}verification",
        {"state": "VGhpcyBpcyBhbiBleGFtcGxl"},
        sub_id={"format": "opaque", "id": "stream-1"},
    )

    assert push(token).status_code == 202
    status = client.get("/ssf/status").json()
    assert status["verified"] is True
    assert status["last_verification_state"] == "VGhpcyBpcyBhbiBleGFtcGxl"
    assert status["stream_id"] == "stream-1"
    assert sink.events == []


def test_requested_verification_is_confirmed_only_by_the_matching_state(
    receiver: Receiver, transmitter: Transmitter
) -> None:
    state = receiver.request_verification()
    (request,) = transmitter.verification_requests

    receiver.receive_set(transmitter.set(f"{SSF}verification", {"state": "stale"}))
    after_stale = receiver.status().verified
    receiver.receive_set(transmitter.set(f"{SSF}verification", {"state": state}))

    assert request == {"state": state, "stream_id": "stream-1"}
    assert after_stale is False
    assert receiver.status().verified is True


def test_stream_updated_event_is_reported_as_transmitter_status(
    push: Push, transmitter: Transmitter, client: TestClient
) -> None:
    push(transmitter.set(f"{SSF}stream-updated", {"status": "paused", "reason": "maintenance"}))

    assert client.get("/ssf/status").json()["transmitter_status"] == "paused"


def test_set_with_aud_list_naming_us_is_accepted(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(
        f"{CAEP}credential-change", {}, sub_id=USER, aud=["https://x", AUDIENCE]
    )

    assert push(token).status_code == 202
    assert len(sink.events) == 1


def test_set_exp_is_not_required_and_not_enforced(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{CAEP}credential-change", {}, sub_id=USER)

    assert "exp" not in _claims(token)
    assert push(token).status_code == 202


def _claims(token: str) -> dict[str, Any]:
    import base64
    import json

    body = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))


def test_healthz_answers_ok(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_issuer_constant_is_the_transmitter_we_configured(settings: ReceiverSettings) -> None:
    assert settings.transmitter is not None
    assert settings.transmitter.metadata_url == (
        "https://tx.example.com/.well-known/ssf-configuration/ssf"
    )
    assert settings.transmitter.issuer == TRANSMITTER


def test_unreadable_dedupe_store_answers_503_and_publishes_nothing(
    push: Push, transmitter: Transmitter, sink: RecordingSink, settings: ReceiverSettings
) -> None:
    # The store cannot tell whether the SET was published already: retry later, never a 500.
    for suffix in ("", "-wal", "-shm"):
        settings.dedupe_path.with_name(settings.dedupe_path.name + suffix).unlink(missing_ok=True)
    settings.dedupe_path.write_bytes(b"this is not an SQLite database" * 100)

    response = push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER))

    assert (response.status_code, response.headers["retry-after"]) == (503, "5")
    assert sink.events == []


def test_receiver_token_is_never_sent_to_a_plain_http_verification_endpoint(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    # The https configuration names an http endpoint: our bearer token would cross the
    # network in clear text.
    import httpx

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/.well-known/ssf-configuration/ssf":
            return httpx.Response(
                200,
                json={
                    "issuer": TRANSMITTER,
                    "jwks_uri": "https://tx.example.com/jwks",
                    "verification_endpoint": "http://tx.example.com/ssf/verify",
                },
            )
        return transmitter.handler(request)

    with (
        httpx.Client(transport=httpx.MockTransport(handler)) as http,
        Receiver(
            settings=settings, sink=sink, max_token_lifetime=LIFETIME, http_client=http, clock=clock
        ) as receiver,
        pytest.raises(ReceiverError, match="https"),
    ):
        receiver.request_verification()

    assert [r for r in seen if "authorization" in r.headers] == []
    assert transmitter.verification_requests == []


def test_subject_naming_no_issuer_still_revokes_under_subject_issuers_but_cannot_unblock(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    # With several issuers sharing the sub namespace, an opaque "u" may be another issuer's
    # account: revoking it too is the safe mistake, lifting its block is not.
    assert settings.transmitter is not None
    limited = replace(
        settings,
        transmitter=replace(settings.transmitter, subject_issuers=("https://idp.example.com",)),
    )
    with (
        transmitter.client() as http,
        Receiver(
            settings=limited,
            sink=sink,
            max_token_lifetime=LIFETIME,
            http_client=http,
            clock=clock,
            monotonic=clock.monotonic,
        ) as receiver,
        TestClient(create_app(receiver)) as client,
    ):
        push = Push(client)
        disabled = push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=USER))
        enabled = push(transmitter.set(f"{RISC}account-enabled", {}, sub_id=USER))
        status, metrics = client.get("/ssf/status").json(), client.get("/metrics").text

    assert (disabled.status_code, enabled.status_code) == (202, 400)
    assert [e.model_dump()["type"] for e in sink.events] == ["subject.blocked"]
    assert "SUBJECT_ISSUERS" in status["last_error"]
    assert f'event_type="{RISC}account-enabled",outcome="rejected:access_denied"}} 1' in metrics


def test_verification_set_replayed_after_a_restart_does_not_mark_the_stream_verified(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink, clock: FakeClock
) -> None:
    # Verification SETs skipped the dedupe store: the same SET, delivered again to a freshly
    # started receiver (nothing requested yet), reported a stream never verified since.
    token = transmitter.set(f"{SSF}verification", {"state": "from-before"})
    receipts, verified = [], []
    for _ in range(2):  # the second receiver shares the first one's dedupe store
        with (
            transmitter.client() as http,
            Receiver(
                settings=settings,
                sink=sink,
                max_token_lifetime=LIFETIME,
                http_client=http,
                clock=clock,
                monotonic=clock.monotonic,
            ) as receiver,
        ):
            receipts.append(receiver.receive_set(token).outcome)
            verified.append(receiver.status().verified)

    assert (receipts, verified) == (["verification", "duplicate"], [True, False])


def test_replayed_stream_updated_set_does_not_overwrite_a_later_transmitter_status(
    receiver: Receiver, transmitter: Transmitter
) -> None:
    paused = transmitter.set(f"{SSF}stream-updated", {"status": "paused"})
    receiver.receive_set(paused)
    receiver.receive_set(transmitter.set(f"{SSF}stream-updated", {"status": "enabled"}))

    assert receiver.receive_set(paused).outcome == "duplicate"
    assert receiver.status().transmitter_status == "enabled"
