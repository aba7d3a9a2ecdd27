"""Every row of the mapping table in receiver/README.md: a SET minted with joserfc, pushed to
the app, reaches the sink as the expected Revocast event."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest

from consumer_sdk._state import RevocationState
from receiver import MappingPolicy, Receiver, ReceiverSettings, RecordingSink
from revocation_events._models import BaseEvent, event_adapter
from tests.receiver._support import CAEP, RISC, START, Transmitter
from tests.receiver.conftest import LIFETIME, Push

EARLIER = START - timedelta(minutes=2)
USER = {"format": "iss_sub", "iss": "https://idp.example.com", "sub": "user-1"}
OPAQUE_USER = {"format": "opaque", "id": "user-1"}
SESSION = {"format": "complex", "user": USER, "session": {"format": "opaque", "id": "sid-9"}}
TOKEN = {"format": "jwt_id", "iss": "https://idp.example.com", "jti": "token-7"}
EXPIRES = START + LIFETIME


@dataclass(frozen=True)
class Row:
    event_type: str
    payload: dict[str, Any]
    sub_id: dict[str, Any]
    expected: dict[str, Any]
    also: tuple[str, ...] = ()
    """Types of the other events the SET publishes besides ``expected``."""


ROWS = {
    "caep session-revoked with a session revokes the session": Row(
        f"{CAEP}session-revoked",
        {"event_timestamp": int(EARLIER.timestamp())},
        SESSION,
        {"type": "session.revoked", "sid": "sid-9", "sub": "user-1", "expires_at": EXPIRES},
    ),
    "caep session-revoked naming only the user sets the subject watermark": Row(
        f"{CAEP}session-revoked",
        {"event_timestamp": int(EARLIER.timestamp())},
        OPAQUE_USER,
        {"type": "subject.tokens_revoked", "sub": "user-1", "issued_before": EARLIER},
        also=("session.revoked",),  # a simple opaque subject may name a session (CAEP 3.1)
    ),
    "caep session-revoked naming a token revokes that jti": Row(
        f"{CAEP}session-revoked",
        {},
        TOKEN,
        {"type": "token.revoked", "jti": "token-7", "expires_at": EXPIRES},
    ),
    "caep credential-change sets the subject watermark at the change": Row(
        f"{CAEP}credential-change",
        {
            "credential_type": "password",
            "change_type": "update",
            "event_timestamp": int(EARLIER.timestamp()),
        },
        SESSION,
        {
            "type": "subject.tokens_revoked",
            "sub": "user-1",
            "issued_before": EARLIER,
            "reason": "caep:credential-change password update",
        },
    ),
    "caep token-claims-change with the version claim bumps the version": Row(
        f"{CAEP}token-claims-change",
        {"claims": {"ver": 8, "role": "secret-admin-role"}},
        USER,
        {
            "type": "subject.version_bumped",
            "sub": "user-1",
            "min_version": 8,
            "reason": "caep:token-claims-change claims=role,ver",
        },
    ),
    "caep token-claims-change without a version sets the watermark": Row(
        f"{CAEP}token-claims-change",
        {"claims": {"role": "admin"}},
        USER,
        {"type": "subject.tokens_revoked", "sub": "user-1", "issued_before": START},
    ),
    "caep assurance-level-change decrease sets the watermark": Row(
        f"{CAEP}assurance-level-change",
        {
            "namespace": "NIST-AAL",
            "current_level": "nist-aal1",
            "previous_level": "nist-aal2",
            "change_direction": "decrease",
        },
        USER,
        {"type": "subject.tokens_revoked", "sub": "user-1", "issued_before": START},
    ),
    "caep assurance-level-change to a lower NIST level, no direction, sets the watermark": Row(
        f"{CAEP}assurance-level-change",
        # change_direction is only a SHOULD when previous_level is given (CAEP 1.0 3.4.1).
        {"namespace": "NIST-AAL", "current_level": "nist-aal1", "previous_level": "nist-aal2"},
        USER,
        {"type": "subject.tokens_revoked", "sub": "user-1", "issued_before": START},
    ),
    "caep risk-level-change to a higher risk sets the watermark": Row(
        f"{CAEP}risk-level-change",
        {"principal": "USER", "current_level": "HIGH", "previous_level": "LOW"},
        USER,
        {
            "type": "subject.tokens_revoked",
            "sub": "user-1",
            "reason": "caep:risk-level-change high",
        },
    ),
    "risc account-disabled blocks the subject": Row(
        f"{RISC}account-disabled",
        {"reason": "hijacking"},
        USER,
        {"type": "subject.blocked", "sub": "user-1", "expires_at": None},
    ),
    "risc account-enabled unblocks the subject": Row(
        f"{RISC}account-enabled",
        {},
        USER,
        {"type": "subject.unblocked", "sub": "user-1", "expires_at": EXPIRES},
    ),
    "risc account-purged deletes the subject": Row(
        f"{RISC}account-purged",
        {},
        OPAQUE_USER,
        {"type": "subject.deleted", "sub": "user-1", "expires_at": EXPIRES},
    ),
    "risc credential-compromise sets the watermark at receipt": Row(
        f"{RISC}credential-compromise",
        {"credential_type": "password", "event_timestamp": int(EARLIER.timestamp())},
        USER,
        {"type": "subject.tokens_revoked", "sub": "user-1", "issued_before": START},
    ),
    "risc sessions-revoked sets the watermark": Row(
        f"{RISC}sessions-revoked",
        {},
        USER,
        {"type": "subject.tokens_revoked", "sub": "user-1"},
    ),
    "risc credential-compromise naming a token revokes that jti": Row(
        f"{RISC}credential-compromise",
        {"credential_type": "password"},
        TOKEN,
        {"type": "token.revoked", "jti": "token-7"},
    ),
}


def _type(event: BaseEvent) -> str:
    return str(event.model_dump()["type"])


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_pushed_set_reaches_the_sink_as_the_mapped_event(
    row: Row, push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    response = push(transmitter.set(row.event_type, row.payload, sub_id=row.sub_id))

    assert response.status_code == 202, response.text
    assert sorted(_type(e) for e in sink.events) == sorted([row.expected["type"], *row.also])
    (event,) = [e for e in sink.events if _type(e) == row.expected["type"]]
    dumped = event.model_dump()
    assert {k: dumped[k] for k in row.expected} == row.expected
    assert event.issuer == "revocast-receiver"
    assert event.occurred_at == START


@pytest.mark.parametrize("order", ["in order", "enabled delivered late"])
def test_block_and_unblock_keep_the_transmitters_order_whatever_the_delivery_order(
    push: Push, transmitter: Transmitter, sink: RecordingSink, order: str
) -> None:
    # SSF does not promise delivery order. The SDK keeps the block/unblock with the latest
    # occurred_at, so receipt time let an older account-enabled delivered late lift a block.
    enabled = transmitter.set(
        f"{RISC}account-enabled", {"event_timestamp": int(EARLIER.timestamp())}, sub_id=USER
    )
    disabled = transmitter.set(
        f"{RISC}account-disabled",
        {"event_timestamp": int((EARLIER + timedelta(minutes=1)).timestamp())},
        sub_id=USER,
    )
    for token in [enabled, disabled] if order == "in order" else [disabled, enabled]:
        assert push(token).status_code == 202
    state = RevocationState(clock=START.timestamp, max_token_lifetime=LIFETIME.total_seconds())
    events = [event_adapter.validate_python(e.model_dump()) for e in sink.events]
    for event in events:
        state.apply(event)
    assert state.check({"sub": "user-1", "iat": int(START.timestamp())}, None) is not None
    assert {e.type: e.occurred_at for e in events} == {
        "subject.unblocked": EARLIER,
        "subject.blocked": EARLIER + timedelta(minutes=1),
    }


def test_every_mapped_rule_outlives_the_tokens_it_matches(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    push(transmitter.set(f"{CAEP}credential-change", {}, sub_id=USER))

    (event,) = sink.events
    assert event.expires_at == START + LIFETIME


def test_subject_inside_the_event_payload_is_used_when_sub_id_is_absent(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    token = transmitter.set(f"{RISC}account-disabled", {"subject": OPAQUE_USER})

    assert push(token).status_code == 202
    assert [e.model_dump()["type"] for e in sink.events] == ["subject.blocked"]


IGNORED = {
    "assurance increase": (
        f"{CAEP}assurance-level-change",
        {"change_direction": "increase", "current_level": "nist-aal3"},
    ),
    "assurance increase to a higher NIST level without change_direction": (
        f"{CAEP}assurance-level-change",
        {"namespace": "NIST-IAL", "current_level": "nist-ial2", "previous_level": "nist-ial1"},
    ),
    "risk decrease": (
        f"{CAEP}risk-level-change",
        {"current_level": "LOW", "previous_level": "HIGH"},
    ),
    "session established": (f"{CAEP}session-established", {}),
    "unknown event type": ("https://example.com/event/made-up", {}),
}


@pytest.mark.parametrize(("event_type", "payload"), IGNORED.values(), ids=IGNORED.keys())
def test_events_that_revoke_nothing_are_acknowledged_without_publishing(
    event_type: str,
    payload: dict[str, Any],
    push: Push,
    transmitter: Transmitter,
    sink: RecordingSink,
) -> None:
    assert push(transmitter.set(event_type, payload, sub_id=USER)).status_code == 202
    assert sink.events == []


def test_unknown_event_types_are_counted_and_listed_in_metrics(
    push: Push, transmitter: Transmitter, client: Any
) -> None:
    push(transmitter.set("https://example.com/event/made-up", {}, sub_id=USER))
    push(transmitter.set("https://example.com/event/made-up", {}, sub_id=USER))

    status = client.get("/ssf/status").json()
    metrics = client.get("/metrics").text
    assert status["unknown_event_types"] == {"https://example.com/event/made-up": 2}
    assert (
        'revocast_receiver_tokens_total{event_type="https://example.com/event/made-up",'
        'outcome="ignored:unknown_event_type"} 2' in metrics
    )


def test_block_needs_a_subject_so_a_session_only_subject_is_acknowledged_and_skipped(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    sub_id = {"format": "complex", "session": {"format": "opaque", "id": "sid-1"}}

    assert push(transmitter.set(f"{RISC}account-disabled", {}, sub_id=sub_id)).status_code == 202
    assert sink.events == []


@pytest.mark.parametrize(
    ("policy", "event_type", "payload"),
    [
        (
            MappingPolicy(watermark_on_assurance_decrease=False),
            f"{CAEP}assurance-level-change",
            {"change_direction": "decrease"},
        ),
        (
            MappingPolicy(watermark_on_risk_increase=False),
            f"{CAEP}risk-level-change",
            {"current_level": "HIGH", "previous_level": "LOW"},
        ),
        # Another source of blocks (an administrator) must not be overruled by this one.
        (MappingPolicy(unblock_on_account_enabled=False), f"{RISC}account-enabled", {}),
    ],
    ids=["assurance", "risk", "unblock"],
)
def test_level_change_watermarks_and_unblocks_can_be_switched_off(
    policy: MappingPolicy,
    event_type: str,
    payload: dict[str, Any],
    settings: ReceiverSettings,
    transmitter: Transmitter,
    sink: RecordingSink,
) -> None:

    with (
        transmitter.client() as http,
        Receiver(
            settings=replace(settings, mapping=policy),
            sink=sink,
            max_token_lifetime=LIFETIME,
            http_client=http,
            clock=transmitter.clock,
        ) as receiver,
    ):
        receipt = receiver.receive_set(transmitter.set(event_type, payload, sub_id=USER))

    assert (receipt.outcome, receipt.detail) == ("ignored", "disabled_by_policy")
    assert sink.events == []


def test_email_subjects_map_only_when_tokens_use_email_as_sub(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink
) -> None:

    sub_id = {"format": "email", "email": "ann@example.com"}
    outcomes = []
    for policy in (MappingPolicy(), MappingPolicy(email_is_subject=True)):
        with (
            transmitter.client() as http,
            Receiver(
                settings=replace(settings, mapping=policy),
                sink=sink,
                max_token_lifetime=LIFETIME,
                http_client=http,
                clock=transmitter.clock,
            ) as receiver,
        ):
            receipt = receiver.receive_set(
                transmitter.set(f"{RISC}account-disabled", {}, sub_id=sub_id)
            )
            outcomes.append(receipt.outcome)

    assert outcomes == ["ignored", "published"]
    assert [e.subject() for e in sink.events] == ["ann@example.com"]


def test_session_revoked_with_a_simple_opaque_subject_revokes_it_as_a_session_too(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # CAEP 1.0 section 3.1's first example names the revoked session this way; other
    # transmitters name a user with the same shape, so both readings must take effect.
    session = {"format": "opaque", "id": "dMTlD|1600802906337.16|16008.16"}
    token = transmitter.set(
        f"{CAEP}session-revoked", {"event_timestamp": int(EARLIER.timestamp())}, sub_id=session
    )

    assert push(token).status_code == 202

    state = RevocationState(clock=START.timestamp, max_token_lifetime=LIFETIME.total_seconds())
    for event in sink.events:
        state.apply(event_adapter.validate_python(event.model_dump()))
    in_session = {"sub": "user-1", "sid": session["id"], "iat": int(EARLIER.timestamp()) - 60}
    as_subject = {"sub": session["id"], "iat": int(EARLIER.timestamp()) - 60}
    assert state.check(in_session, None) is not None
    assert state.check(as_subject, None) is not None


def test_set_publishing_two_rules_is_retried_whole_when_the_second_publish_fails(
    push: Push, transmitter: Transmitter, sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = transmitter.set(f"{CAEP}session-revoked", {}, sub_id=OPAQUE_USER)
    real, calls = sink.publish, []

    def publish(event: object) -> object:
        calls.append(event)
        if len(calls) == 2:
            raise OSError("broker went away")
        return real(event)  # type: ignore[arg-type]

    monkeypatch.setattr(sink, "publish", publish)

    first, second = push(token), push(token)

    assert (first.status_code, second.status_code) == (503, 202)
    assert sorted(_type(e) for e in sink.events) == [
        "session.revoked",
        "session.revoked",
        "subject.tokens_revoked",
    ]


def test_risc_account_disabled_with_a_risc_1_0_subject_blocks_the_user(
    push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # The RISC profile's own example (subject_type "iss-sub") used to be refused with 400,
    # so the hijacked account was never blocked.
    subject = {"subject_type": "iss-sub", "iss": "https://idp.example.com", "sub": "user-1"}
    token = transmitter.set(f"{RISC}account-disabled", {"subject": subject, "reason": "hijacking"})

    assert push(token).status_code == 202
    (event,) = sink.events
    assert event.model_dump()["type"] == "subject.blocked"
    assert event.model_dump()["sub"] == "user-1"


def _state_after(events: list[BaseEvent]) -> RevocationState:
    state = RevocationState(clock=START.timestamp, max_token_lifetime=LIFETIME.total_seconds())
    for event in events:
        state.apply(event_adapter.validate_python(event.model_dump()))
    return state


@contextmanager
def _email_receiver(
    settings: ReceiverSettings,
    transmitter: Transmitter,
    sink: RecordingSink,
    *,
    ignores_case: bool = False,
) -> Iterator[Receiver]:
    policy = MappingPolicy(email_is_subject=True, email_ignores_case=ignores_case)
    with (
        transmitter.client() as http,
        Receiver(
            settings=replace(settings, mapping=policy),
            sink=sink,
            max_token_lifetime=LIFETIME,
            http_client=http,
            clock=transmitter.clock,
        ) as receiver,
    ):
        yield receiver


@pytest.mark.parametrize(
    "event_type",
    [f"{CAEP}credential-change", f"{RISC}account-disabled", f"{RISC}account-purged"],
)
def test_email_subject_in_another_case_still_revokes_tokens_carrying_the_lowercase_address(
    event_type: str, settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # SDKs match sub exactly: "Alice@Example.COM" used to leave every token of
    # "alice@example.com" valid, though RFC 9493 (3.2.3) expects receivers to canonicalise.
    sub_id = {"format": "email", "email": "Alice@Example.COM"}
    with _email_receiver(settings, transmitter, sink) as receiver:
        receipt = receiver.receive_set(transmitter.set(event_type, {}, sub_id=sub_id))

    assert receipt.outcome == "published"
    state = _state_after(sink.events)
    iat = int(EARLIER.timestamp())
    for spelling in ("Alice@Example.COM", "Alice@example.com", "alice@example.com"):
        assert state.check({"sub": spelling, "iat": iat}, None) is not None, spelling
    assert state.check({"sub": "bob@example.com", "iat": iat}, None) is None


def test_email_account_enabled_does_not_lift_the_block_of_a_lowercase_lookalike_mailbox(
    settings: ReceiverSettings, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # The local part may be case-sensitive (RFC 5321 2.4): "alice@" may be another account
    # than "Alice@", so an unblock of one must not lift the block of the other. The domain is
    # case-insensitive, so the unblock does cover it.
    blocked = transmitter.set(
        f"{RISC}account-disabled",
        {"event_timestamp": int(EARLIER.timestamp())},
        sub_id={"format": "email", "email": "alice@example.com"},
    )
    enabled = transmitter.set(
        f"{RISC}account-enabled", {}, sub_id={"format": "email", "email": "Alice@Example.COM"}
    )
    with _email_receiver(settings, transmitter, sink) as receiver:
        receiver.receive_set(blocked)
        receiver.receive_set(enabled)

    unblocked = [e.subject() for e in sink.events if _type(e) == "subject.unblocked"]
    assert unblocked == ["Alice@Example.COM", "Alice@example.com"]
    state = _state_after(sink.events)
    assert state.check({"sub": "alice@example.com", "iat": int(START.timestamp())}, None)


@pytest.mark.parametrize(
    "event_type", [f"{CAEP}credential-change", f"{RISC}account-disabled", f"{RISC}account-purged"]
)
def test_aliases_subject_revokes_tokens_carrying_any_of_its_subs(
    event_type: str, push: Push, transmitter: Transmitter, sink: RecordingSink
) -> None:
    # RFC 9493 aliases list identifiers of one subject because the sender does not know which
    # the receiver uses. Only the first used to be published: tokens of a second identity
    # provider naming the user by its own sub stayed valid.
    sub_id = {
        "format": "aliases",
        "identifiers": [
            {"format": "iss_sub", "iss": "https://idp.example.com", "sub": "a-123"},
            {"format": "iss_sub", "iss": "https://idp2.example.com", "sub": "b-456"},
        ],
    }

    assert push(transmitter.set(event_type, {}, sub_id=sub_id)).status_code == 202

    state = _state_after(sink.events)
    iat = int(EARLIER.timestamp())
    for sub in ("a-123", "b-456"):
        assert state.check({"sub": sub, "iat": iat}, None) is not None, sub


def test_email_account_enabled_lifts_the_lowercase_block_when_the_provider_ignores_case(
    settings: ReceiverSettings, transmitter: Transmitter
) -> None:
    # Without EMAIL_IGNORES_CASE a mixed-case disable/enable pair leaves the lower-case
    # spelling blocked (the fail-safe default); with it, the enable undoes the disable.
    sub_id = {"format": "email", "email": "Alice@Example.COM"}
    disabled = transmitter.set(
        f"{RISC}account-disabled", {"event_timestamp": int(EARLIER.timestamp())}, sub_id=sub_id
    )
    enabled = transmitter.set(f"{RISC}account-enabled", {}, sub_id=sub_id)
    token = {"sub": "alice@example.com", "iat": int(START.timestamp())}
    blocked = []
    for ignores_case in (False, True):
        fresh = RecordingSink()
        with _email_receiver(settings, transmitter, fresh, ignores_case=ignores_case) as r:
            r.receive_set(disabled)
            r.receive_set(enabled)
        blocked.append(_state_after(fresh.events).check(token, None) is not None)
        settings = replace(settings, dedupe_path=settings.dedupe_path.with_suffix(".2"))

    assert blocked == [True, False]


DEVICE = {"format": "opaque", "id": "device-secret-42"}
TENANT = {"format": "opaque", "id": "tenant-acme"}
WITH_TENANT_OR_DEVICE = {
    "user and tenant": {"format": "complex", "user": USER, "tenant": TENANT},
    "user and device": {"format": "complex", "user": USER, "device": DEVICE},
    "user, session, device and tenant": {
        "format": "complex",
        "user": USER,
        "session": {"format": "opaque", "id": "sid-9"},
        "device": DEVICE,
        "tenant": TENANT,
    },
    "draft style, no format": {"user": USER, "device": DEVICE, "tenant": TENANT},
}


@pytest.mark.parametrize("sub_id", WITH_TENANT_OR_DEVICE.values(), ids=WITH_TENANT_OR_DEVICE.keys())
@pytest.mark.parametrize(
    ("event_type", "expected"),
    [
        (f"{CAEP}credential-change", "subject.tokens_revoked"),
        (f"{RISC}account-disabled", "subject.blocked"),
    ],
)
def test_complex_subject_naming_a_user_with_a_tenant_or_device_revokes_the_user(
    event_type: str,
    expected: str,
    sub_id: dict[str, Any],
    push: Push,
    transmitter: Transmitter,
    sink: RecordingSink,
) -> None:
    # A Revocast sub is not scoped to a tenant or device: the user's rule covers them (and
    # more), the fail-safe reading.
    assert push(transmitter.set(event_type, {}, sub_id=sub_id)).status_code == 202

    assert [(_type(e), e.subject()) for e in sink.events] == [(expected, "user-1")]


@pytest.mark.parametrize(
    "sub_id",
    [
        {"format": "complex", "device": DEVICE},
        {"format": "complex", "tenant": TENANT},
        {"device": DEVICE, "tenant": TENANT},
    ],
    ids=["device", "tenant", "draft device and tenant"],
)
def test_complex_subject_naming_only_a_device_or_tenant_is_acknowledged_counted_and_logged(
    sub_id: dict[str, Any],
    push: Push,
    transmitter: Transmitter,
    sink: RecordingSink,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = transmitter.set(f"{CAEP}credential-change", {}, sub_id=sub_id, jti="dev-only")

    with caplog.at_level(logging.WARNING, logger="receiver"):
        assert push(token).status_code == 202
        assert push(token).status_code == 202  # a redelivery is not logged again

    assert sink.events == []
    counted = receiver.metrics.snapshot()
    assert counted[(f"{CAEP}credential-change", "ignored:no_usable_subject")] == 1
    (record,) = [r for r in caplog.records if "names no user" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "'dev-only'" in record.getMessage()
    assert "complex(" in record.getMessage()
    assert "device-secret-42" not in caplog.text  # shapes, never identifier values
