from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from revocation_events import (
    SCHEMA_VERSION,
    BaseEvent,
    GlobalTokensRevoked,
    KeyRevoked,
    SessionRevoked,
    SubjectBlocked,
    SubjectDeleted,
    SubjectTokensRevoked,
    SubjectUnblocked,
    SubjectVersionBumped,
    TokenRevoked,
    event_adapter,
)

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)


def every_kind() -> list[BaseEvent]:
    common: dict[str, Any] = {"issuer": "idp", "occurred_at": NOW, "reason": "test"}
    return [
        TokenRevoked(jti="j1", sub="alice", expires_at=LATER, **common),
        SessionRevoked(sid="s1", sub="alice", expires_at=LATER, **common),
        SubjectTokensRevoked(sub="alice", issued_before=NOW, expires_at=LATER, **common),
        SubjectBlocked(sub="alice", **common),
        SubjectUnblocked(sub="alice", expires_at=LATER, **common),
        SubjectDeleted(sub="alice", expires_at=LATER, **common),
        SubjectVersionBumped(sub="alice", min_version=7, expires_at=LATER, **common),
        KeyRevoked(kid="k-2025", **common),
        GlobalTokensRevoked(issued_before=NOW, expires_at=LATER, **common),
    ]


@pytest.mark.parametrize("event", every_kind(), ids=lambda e: e.type)
def test_every_kind_round_trips_through_json(event: BaseEvent) -> None:
    data = event.model_dump_json().encode()
    assert event_adapter.validate_json(data) == event


def test_the_discriminator_covers_exactly_the_kinds_we_define() -> None:
    mapping = event_adapter.json_schema()["discriminator"]["mapping"]
    assert set(mapping) == {e.type for e in every_kind()}  # type: ignore[attr-defined]


def test_events_get_a_fresh_id_and_the_current_schema_version() -> None:
    a = SubjectBlocked(issuer="idp", sub="bob")
    b = SubjectBlocked(issuer="idp", sub="bob")
    assert a.id != b.id
    assert isinstance(a.id, uuid.UUID)
    assert a.v == SCHEMA_VERSION
    assert a.occurred_at.tzinfo is not None


def test_events_are_immutable() -> None:
    event = SubjectBlocked(issuer="idp", sub="bob")
    with pytest.raises(ValidationError):
        event.sub = "mallory"


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(ValidationError, match="timezone"):
        TokenRevoked(issuer="idp", jti="j", expires_at=datetime(2030, 1, 1))


@pytest.mark.parametrize(
    ("model", "kwargs"),
    [
        (TokenRevoked, {"jti": "", "expires_at": LATER}),
        (TokenRevoked, {"jti": "j"}),
        (SessionRevoked, {"sid": "", "expires_at": LATER}),
        (SubjectTokensRevoked, {"sub": "a", "expires_at": LATER}),
        (SubjectBlocked, {"sub": ""}),
        (SubjectVersionBumped, {"sub": "a", "min_version": -1, "expires_at": LATER}),
        (KeyRevoked, {"kid": ""}),
        (KeyRevoked, {"kid": "k" * 300}),
    ],
)
def test_missing_or_bad_fields_are_rejected(model: type[BaseEvent], kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        model(issuer="idp", **kwargs)


def test_issuer_is_required() -> None:
    with pytest.raises(ValidationError, match="issuer"):
        SubjectBlocked(sub="a")  # type: ignore[call-arg]


def test_a_global_watermark_far_in_the_future_is_rejected() -> None:
    with pytest.raises(ValidationError, match="issued_before"):
        GlobalTokensRevoked(
            issuer="idp", occurred_at=NOW, issued_before=NOW + timedelta(days=1), expires_at=LATER
        )


def test_unknown_fields_from_a_compatible_producer_are_ignored() -> None:
    raw = SubjectBlocked(issuer="idp", sub="a").model_dump(mode="json")
    raw["added_in_a_later_minor_version"] = True
    assert event_adapter.validate_python(raw).sub == "a"  # type: ignore[union-attr]


def test_subject_is_reported_only_for_subject_scoped_events() -> None:
    subjects = [e.subject() for e in every_kind()]
    assert subjects == ["alice"] * 7 + [None, None]
