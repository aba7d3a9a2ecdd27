from __future__ import annotations

from typing import Any

import pytest

from receiver import SetRejected
from receiver._subjects import Subject, resolve_subject, subject_shape

IDP = "https://idp.example.com"

CASES: dict[str, tuple[dict[str, Any], Subject]] = {
    "opaque names the subject, without an issuer": (
        {"format": "opaque", "id": "u"},
        Subject(sub="u", unscoped=True),
    ),
    "iss_sub names the subject and its issuer": (
        {"format": "iss_sub", "iss": IDP, "sub": "u"},
        Subject(sub="u", issuers=frozenset({IDP})),
    ),
    "jwt_id names one token": (
        {"format": "jwt_id", "iss": IDP, "jti": "t"},
        Subject(jti="t", issuers=frozenset({IDP})),
    ),
    "complex names user and session": (
        {
            "format": "complex",
            "user": {"format": "opaque", "id": "u"},
            "session": {"format": "opaque", "id": "s"},
        },
        Subject(sub="u", sid="s", unscoped=True),
    ),
    "draft complex without format": (
        {"user": {"format": "opaque", "id": "u"}, "tenant": {"format": "opaque", "id": "t"}},
        Subject(sub="u", unscoped=True),
    ),
    "aliases name every sub, in order, and the first sid": (
        {
            "format": "aliases",
            "identifiers": [
                {"format": "email", "email": "a@example.com"},
                {"format": "opaque", "id": "u"},
                {"format": "iss_sub", "iss": IDP, "sub": "v"},
                {"format": "opaque", "id": "u"},
                {
                    "format": "complex",
                    "session": {"format": "opaque", "id": "s1"},
                },
                {
                    "format": "complex",
                    "session": {"format": "opaque", "id": "s2"},
                },
            ],
        },
        Subject(sub="u", sid="s1", issuers=frozenset({IDP}), also=("v",), unscoped=True),
    ),
    "RISC 1.0 subject_type iss-sub names the subject and its issuer": (
        # The RISC profile's (and Google Cross-Account Protection's) account-disabled example.
        {"subject_type": "iss-sub", "iss": IDP, "sub": "u"},
        Subject(sub="u", issuers=frozenset({IDP})),
    ),
    "phone number names nothing": ({"format": "phone_number", "phone_number": "+1"}, Subject()),
    "email names nothing by default": ({"format": "email", "email": "a@x"}, Subject()),
}


@pytest.mark.parametrize(("identifier", "expected"), CASES.values(), ids=CASES.keys())
def test_subject_identifier_resolves_to_what_it_names(
    identifier: dict[str, Any], expected: Subject
) -> None:
    assert resolve_subject(identifier, email_is_subject=False) == expected


@pytest.mark.parametrize(
    "identifier",
    [
        {"format": "opaque"},
        {"format": "opaque", "id": ""},
        {"format": "opaque", "id": "x" * 257},
        {"format": "iss_sub", "sub": "u"},
        {"format": "complex", "user": "u"},
        {"format": "aliases", "identifiers": "u"},
        {"id": "u"},
    ],
)
def test_malformed_subject_identifier_is_invalid_request(identifier: dict[str, Any]) -> None:
    with pytest.raises(SetRejected) as caught:
        resolve_subject(identifier, email_is_subject=False)

    assert caught.value.code == "invalid_request"


def test_deeply_nested_aliases_are_refused() -> None:
    identifier: dict[str, Any] = {"format": "opaque", "id": "u"}
    for _ in range(6):
        identifier = {"format": "aliases", "identifiers": [identifier]}

    with pytest.raises(SetRejected):
        resolve_subject(identifier, email_is_subject=False)


def _aliases(count: int) -> dict[str, Any]:
    return {
        "format": "aliases",
        "identifiers": [{"format": "opaque", "id": f"u{i}"} for i in range(count)],
    }


def test_aliases_up_to_the_bound_are_all_named() -> None:
    subject = resolve_subject(_aliases(4), email_is_subject=False, max_aliases=4)

    assert (subject.sub, subject.also) == ("u0", ("u1", "u2", "u3"))


def test_aliases_over_the_bound_are_refused_not_cut_short() -> None:
    with pytest.raises(SetRejected, match="more aliases") as caught:
        resolve_subject(_aliases(5), email_is_subject=False, max_aliases=4)

    assert caught.value.code == "invalid_request"


def test_alias_bound_counts_every_aliases_list_of_the_subject() -> None:
    # Nesting must not multiply the bound: complex members and aliases inside aliases share it.
    identifier = {
        "format": "complex",
        "user": {"format": "aliases", "identifiers": [_aliases(2), _aliases(2)]},
    }

    with pytest.raises(SetRejected, match="more aliases"):
        resolve_subject(identifier, email_is_subject=False, max_aliases=5)
    assert resolve_subject(identifier, email_is_subject=False, max_aliases=6).sub == "u0"


@pytest.mark.parametrize(
    ("address", "also", "folded"),
    [
        ("Alice@Example.COM", ("Alice@example.com",), ("alice@example.com",)),
        ("Alice@example.com", (), ("alice@example.com",)),
        ("alice@Example.com", ("alice@example.com",), ()),
        ("alice@example.com", (), ()),
        ('"A@B"@Example.com', ('"A@B"@example.com',), ('"a@b"@example.com',)),
        ("no-at-sign", (), ()),
    ],
)
def test_email_subject_names_the_lowercase_domain_and_the_folded_address_apart(
    address: str, also: tuple[str, ...], folded: tuple[str, ...]
) -> None:
    subject = resolve_subject({"format": "email", "email": address}, email_is_subject=True)

    assert (subject.sub, subject.also, subject.folded) == (address, also, folded)


def test_email_spelling_longer_than_an_event_allows_is_left_out() -> None:
    # "İ" lower-cases to two code points: a 256-character address can fold to 257.
    address = "İ" * 200 + "@" + "e" * 55

    subject = resolve_subject({"format": "email", "email": address}, email_is_subject=True)

    assert (subject.sub, subject.folded) == (address, ())


def test_subject_shape_names_formats_and_members_never_values() -> None:
    identifier = {
        "format": "complex",
        "user": {"format": "email", "email": "alice@example.com"},
        "device": {"format": "aliases", "identifiers": [{"format": "opaque", "id": "d-1"}]},
    }

    shape = subject_shape(identifier)

    assert shape == "complex(user=email,device=aliases(opaque))"
