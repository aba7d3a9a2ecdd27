from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi.testclient import TestClient

from consumer_sdk import ConsumerSettings, Revocast, RevokedBy, TokenRevokedError
from consumer_sdk.testing import InMemorySource
from identity_service import IdentitySettings, Scrypt, create_app, hash_password, verify_password
from identity_service._app import watermark_after
from revocation_events import SettingsError, SigningKey, SubjectDeleted, SubjectTokensRevoked

ADMIN = "admin-token-for-tests-0123456789"
FAST = 2**10
SEED = {"alice": "correct horse"}
"""scrypt cost of the tests: the OWASP default costs ~0.5 s a hash."""


def idp_settings(tmp_path: Path, **overrides: Any) -> IdentitySettings:
    fields: dict[str, Any] = {"db_path": tmp_path / "idp.sqlite3", "admin_token": ADMIN}
    return IdentitySettings(**{"scrypt_n": FAST, **fields, **overrides})


class RecordingPublisher:
    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((name, args, kwargs))

    def revoke_session(self, sid: str, **kw: Any) -> None:
        self._record("revoke_session", sid, **kw)

    def revoke_subject(self, sub: str, **kw: Any) -> None:
        self._record("revoke_subject", sub, **kw)

    def block_subject(self, sub: str, **kw: Any) -> None:
        self._record("block_subject", sub, **kw)

    def unblock_subject(self, sub: str, **kw: Any) -> None:
        self._record("unblock_subject", sub, **kw)

    def delete_subject(self, sub: str, **kw: Any) -> None:
        self._record("delete_subject", sub, **kw)

    def bump_subject_version(self, sub: str, **kw: Any) -> None:
        self._record("bump_subject_version", sub, **kw)

    def revoke_key(self, kid: str, **kw: Any) -> None:
        self._record("revoke_key", kid, **kw)

    def names(self) -> list[str]:
        return [c[0] for c in self.calls]


class Clock:
    """Starts at the real time: PyJWT checks ``iat``/``exp`` against the real clock."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def client(tmp_path: Path, publisher: RecordingPublisher, clock: Clock) -> TestClient:
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    return TestClient(app)


def login(client: TestClient, password: str = "correct horse") -> dict[str, Any]:  # noqa: S107
    response = client.post("/login", json={"username": "alice", "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def claims_of(client: TestClient, token: str) -> dict[str, Any]:
    jwks = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in jwks.keys if k.key_id == kid)
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=["RS256"], audience="revocast-demo", options={"verify_exp": False}
    )
    return decoded


def test_iat_is_the_unrounded_issue_time_so_it_orders_against_a_watermark(
    client: TestClient, clock: Clock
) -> None:
    clock.now += 0.2501
    claims = claims_of(client, login(client)["access_token"])
    assert claims["iat"] == clock.now


def test_passwords_are_hashed_with_scrypt_and_verified() -> None:
    stored = hash_password("s3cret", Scrypt(n=FAST))
    assert stored.startswith("scrypt$")
    assert "s3cret" not in stored
    assert verify_password("s3cret", stored)
    assert not verify_password("wrong", stored)
    assert not verify_password("s3cret", "garbage")


def test_login_issues_a_short_lived_token_with_every_claim_services_check(
    client: TestClient, clock: Clock
) -> None:
    tokens = login(client)
    claims = claims_of(client, tokens["access_token"])
    assert claims["sub"] == "alice"
    assert {"jti", "sid", "iat", "exp", "ver", "iss"} <= set(claims)
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] == int(clock.now)
    assert jwt.get_unverified_header(tokens["access_token"])["alg"] == "RS256"


def test_login_with_a_wrong_password_or_unknown_user_is_refused(client: TestClient) -> None:
    assert client.post("/login", json={"username": "alice", "password": "x"}).status_code == 401
    assert client.post("/login", json={"username": "bob", "password": "x"}).status_code == 401


def test_refresh_rotates_the_token_within_the_same_session(client: TestClient) -> None:
    first = login(client)
    second = client.post("/token/refresh", json={"refresh_token": first["refresh_token"]}).json()
    assert second["refresh_token"] != first["refresh_token"]
    sid = claims_of(client, first["access_token"])["sid"]
    assert claims_of(client, second["access_token"])["sid"] == sid


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family_and_publishes_it(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    first = login(client)
    sid = claims_of(client, first["access_token"])["sid"]
    second = client.post("/token/refresh", json={"refresh_token": first["refresh_token"]}).json()
    reuse = client.post("/token/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    assert "reuse" in reuse.json()["detail"]
    assert publisher.calls == [
        ("revoke_session", (sid,), {"sub": "alice", "reason": "refresh_token_reuse"})
    ]
    # The legitimate holder's newer refresh token is dead too: the family is revoked.
    later = client.post("/token/refresh", json={"refresh_token": second["refresh_token"]})
    assert later.status_code == 401


def test_a_reuse_whose_revocation_fails_still_ends_the_session_and_is_published_by_the_retry(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    client = TestClient(app, raise_server_exceptions=False)
    first = login(client)
    sid = claims_of(client, first["access_token"])["sid"]
    second = client.post("/token/refresh", json={"refresh_token": first["refresh_token"]}).json()

    def broken(sid: str, **kw: Any) -> None:
        raise RuntimeError("Kafka is down")

    publisher.revoke_session = broken  # type: ignore[method-assign]
    stolen = {"refresh_token": first["refresh_token"]}
    failed = client.post("/token/refresh", json=stolen)
    assert failed.status_code == 503
    assert "will be retried" in failed.json()["detail"]
    del publisher.revoke_session  # back to the recording method
    later = client.post("/token/refresh", json={"refresh_token": second["refresh_token"]})
    assert later.status_code == 401

    assert app.state.outbox.publish_all() == 0

    assert publisher.calls == [
        ("revoke_session", (sid,), {"sub": "alice", "reason": "refresh_token_reuse"})
    ]
    app.state.outbox.publish_all()
    assert len(publisher.calls) == 1


def test_an_expired_refresh_token_is_refused(client: TestClient, clock: Clock) -> None:
    tokens = login(client)
    clock.now += 86_400 + 1
    response = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert response.status_code == 401


def test_logout_revokes_the_session_and_its_refresh_tokens(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    tokens = login(client)
    sid = claims_of(client, tokens["access_token"])["sid"]
    assert client.post("/logout", headers=auth(tokens["access_token"])).status_code == 204
    assert publisher.names() == ["revoke_session"]
    assert publisher.calls[0][1] == (sid,)
    refresh = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_logout_everywhere_and_password_change_publish_a_subject_watermark(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    tokens = login(client)
    client.post("/logout-everywhere", headers=auth(tokens["access_token"]))
    response = client.post(
        "/password",
        headers=auth(login(client)["access_token"]),
        json={"old_password": "correct horse", "new_password": "battery staple"},
    )
    assert response.status_code == 204
    assert publisher.names() == ["revoke_subject", "revoke_subject"]
    assert publisher.calls[1][2]["reason"] == "password_change"
    assert client.post(
        "/login", json={"username": "alice", "password": "battery staple"}
    ).is_success


def test_password_change_with_the_wrong_old_password_publishes_nothing(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    tokens = login(client)
    response = client.post(
        "/password",
        headers=auth(tokens["access_token"]),
        json={"old_password": "nope", "new_password": "battery staple"},
    )
    assert response.status_code == 403
    assert publisher.calls == []


def test_a_password_change_whose_revocation_fails_keeps_the_new_password_and_its_watermark(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # The watermark is committed with the new password: the retry publishes it with the time of
    # the change, so every token minted before it is revoked, and the old password (which its
    # owner may be replacing because it leaked) is not given back.
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    client = TestClient(app, raise_server_exceptions=False)
    tokens = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}

    def broken(sub: str, **kw: Any) -> None:
        raise RuntimeError("Kafka is down")

    publisher.revoke_subject = broken  # type: ignore[method-assign]
    changed_at = clock.now
    failed = client.post("/password", headers=auth(tokens["access_token"]), json=change)
    assert failed.status_code == 503
    assert failed.json()["detail"].startswith("password changed;")
    del publisher.revoke_subject  # back to the recording method
    clock.now += 30

    assert app.state.outbox.publish_all() == 0

    assert publisher.calls == [
        (
            "revoke_subject",
            ("alice",),
            {"issued_before": watermark_after(changed_at), "reason": "password_change"},
        )
    ]
    old = client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert old.status_code == 401
    assert client.post(
        "/login", json={"username": "alice", "password": "battery staple"}
    ).is_success


def test_permission_change_bumps_the_version_claim_and_publishes_the_new_minimum(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    old = login(client)
    response = client.post("/admin/users/alice/permissions", headers=auth(ADMIN))
    assert response.json() == {"version": 1}
    assert publisher.calls == [
        ("bump_subject_version", ("alice",), {"min_version": 1, "reason": "permissions_changed"})
    ]
    assert claims_of(client, old["access_token"])["ver"] == 0
    assert claims_of(client, login(client)["access_token"])["ver"] == 1


def test_admin_block_refuses_login_and_publishes_until_unblocked(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    blocked = client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert blocked.status_code == 401  # as a wrong password: no oracle
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204
    assert publisher.names() == ["block_subject", "unblock_subject"]
    login(client)


def test_admin_endpoints_refuse_a_missing_or_wrong_admin_token(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    assert client.post("/admin/users/alice/block").status_code == 403
    assert client.post("/admin/users/alice/block", headers=auth("x" * 32)).status_code == 403
    user_token = login(client)["access_token"]
    assert client.post("/admin/users/alice/block", headers=auth(user_token)).status_code == 403
    assert publisher.calls == []


def jwks_kids(client: TestClient) -> set[str]:
    return {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}


def test_the_next_signing_key_is_published_before_it_signs_anything(client: TestClient) -> None:
    kid = jwt.get_unverified_header(login(client)["access_token"])["kid"]
    published = jwks_kids(client)
    assert kid in published
    assert len(published) == 2  # the active key and the next one
    new_kid = client.post("/admin/keys/rotate", headers=auth(ADMIN)).json()["kid"]
    assert new_kid in published  # services that cached the JWKS already know it
    assert jwt.get_unverified_header(login(client)["access_token"])["kid"] == new_kid


def test_key_rotation_keeps_old_tokens_verifiable_and_revocation_drops_the_key(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    old = login(client)["access_token"]
    old_kid = jwt.get_unverified_header(old)["kid"]
    new_kid = client.post("/admin/keys/rotate", headers=auth(ADMIN)).json()["kid"]
    assert {old_kid, new_kid} <= jwks_kids(client)
    assert client.post(f"/admin/keys/{old_kid}/revoke", headers=auth(ADMIN)).status_code == 204
    assert old_kid not in jwks_kids(client)
    assert new_kid in jwks_kids(client)
    assert publisher.calls == [("revoke_key", (old_kid,), {"reason": "key_compromised"})]


def test_revoking_the_active_key_switches_to_the_already_published_next_key(
    client: TestClient,
) -> None:
    before = jwks_kids(client)
    active = jwt.get_unverified_header(login(client)["access_token"])["kid"]
    assert client.post(f"/admin/keys/{active}/revoke", headers=auth(ADMIN)).status_code == 204
    successor = jwt.get_unverified_header(login(client)["access_token"])["kid"]
    assert successor != active
    assert successor in before


def test_the_jwks_never_contains_private_key_material(client: TestClient) -> None:
    for key in client.get("/.well-known/jwks.json").json()["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
        assert key["alg"] == "RS256"


def test_bad_settings_name_the_variable() -> None:
    with pytest.raises(SettingsError, match="REVOCAST_IDP_ADMIN_TOKEN"):
        IdentitySettings.from_env(environ={})
    with pytest.raises(SettingsError, match="REVOCAST_IDP_ACCESS_TOKEN_TTL"):
        IdentitySettings.from_env(
            environ={"REVOCAST_IDP_ADMIN_TOKEN": ADMIN, "REVOCAST_IDP_ACCESS_TOKEN_TTL": "soon"}
        )


def test_login_costs_one_scrypt_whether_or_not_the_user_exists(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # User enumeration by timing: an unknown user must not cost a different number of hashes.
    calls: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    client.post("/login", json={"username": "alice", "password": "wrong"})
    known = len(calls)
    calls.clear()
    client.post("/login", json={"username": "mallory", "password": "wrong"})
    assert len(calls) == known == 1


def test_a_non_ascii_admin_header_is_refused_not_a_server_error(tmp_path: Path) -> None:
    settings = idp_settings(tmp_path)
    client = TestClient(create_app(settings, RecordingPublisher()), raise_server_exceptions=False)
    header = [(b"authorization", "Bearer é-not-the-token".encode("latin-1"))]
    assert client.post("/admin/users/alice/block", headers=header).status_code == 403


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_lone_surrogate_in_the_login_body_is_a_client_error(tmp_path: Path, field: str) -> None:
    settings = idp_settings(tmp_path)
    client = TestClient(create_app(settings, RecordingPublisher()), raise_server_exceptions=False)
    body = {"username": "alice", "password": "x"}
    raw = json.dumps(body).replace(f'"{body[field]}"', '"\\ud800"', 1).encode()
    response = client.post("/login", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_a_lone_surrogate_in_a_refresh_token_is_a_client_error(tmp_path: Path) -> None:
    settings = idp_settings(tmp_path)
    client = TestClient(create_app(settings, RecordingPublisher()), raise_server_exceptions=False)
    raw = b'{"refresh_token": "\\udfff"}'
    response = client.post(
        "/token/refresh", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422


def test_a_refused_password_is_not_echoed_in_the_validation_error(client: TestClient) -> None:
    tokens = login(client)
    secret = "short7!"  # below the 8-character minimum
    response = client.post(
        "/password",
        headers=auth(tokens["access_token"]),
        json={"old_password": "correct horse", "new_password": secret},
    )
    assert response.status_code == 422
    assert secret not in response.text
    assert "correct horse" not in response.text
    assert response.json()["detail"][0]["loc"] == ["body", "new_password"]
    too_long = "p" * 1025
    refused = client.post("/login", json={"username": "alice", "password": too_long})
    assert refused.status_code == 422
    assert too_long not in refused.text


def watermark(publisher: RecordingPublisher) -> float:
    kwargs = next(c[2] for c in publisher.calls if c[0] == "revoke_subject")
    issued_before: datetime = kwargs["issued_before"]
    return issued_before.timestamp()


def test_a_token_minted_in_the_same_instant_before_a_password_change_is_under_its_watermark(
    client: TestClient, publisher: RecordingPublisher, clock: Clock
) -> None:
    # The clock does not move between the login and the change: the SDK refuses a token of
    # the subject when iat < issued_before, so the watermark must lie strictly after this iat,
    # and a login after the change (its scrypt alone takes milliseconds) must be at or above it.
    clock.now += 0.0004
    old = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    assert client.post("/password", headers=auth(old["access_token"]), json=change).is_success
    clock.now += 0.001
    new = login(client, "battery staple")
    old_iat = claims_of(client, old["access_token"])["iat"]
    new_iat = claims_of(client, new["access_token"])["iat"]
    assert old_iat < watermark(publisher) <= new_iat


def test_a_login_that_verified_the_old_password_during_a_password_change_keeps_no_session(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Race: login checks the old password (scrypt: tens of ms) while the change commits and
    # publishes its watermark; the login then mints tokens after the watermark.
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    client = TestClient(app)
    victim = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    raced: list[int] = []

    def verify_while_the_password_changes(password: str, stored: str) -> bool:
        ok = verify_password(password, stored)
        if not raced:
            raced.append(1)
            changed = client.post("/password", headers=auth(victim["access_token"]), json=change)
            assert changed.is_success
            clock.now += 0.001
        return ok

    monkeypatch.setattr(
        "identity_service._passwords.verify_password", verify_while_the_password_changes
    )
    attacker = client.post("/login", json={"username": "alice", "password": "correct horse"})
    monkeypatch.undo()

    assert raced
    if attacker.is_success:  # acceptable only if the watermark covers it and it cannot refresh
        tokens = attacker.json()
        assert claims_of(client, tokens["access_token"])["iat"] < watermark(publisher)
        again = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
        assert again.status_code == 401


def test_a_refresh_racing_a_password_change_mints_no_token_past_the_watermark(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    client = TestClient(app)
    tokens = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    store = app.state.store
    real_use = store.use_refresh_token

    def use_then_the_password_changes(token: str) -> Any:
        found = real_use(token)
        changed = client.post("/password", headers=auth(tokens["access_token"]), json=change)
        assert changed.is_success
        clock.now += 0.001
        return found

    monkeypatch.setattr(store, "use_refresh_token", use_then_the_password_changes)
    refreshed = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    monkeypatch.undo()

    if refreshed.is_success:
        iat = claims_of(client, refreshed.json()["access_token"])["iat"]
        assert iat < watermark(publisher)


def test_a_blocked_users_earlier_token_cannot_change_the_password_at_the_identity_service(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    # Services refuse it (block_subject), and so must the IdP: otherwise whoever holds the
    # token of a blocked (e.g. compromised) account sets a new password and owns it on unblock.
    tokens = login(client)
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    change = {"old_password": "correct horse", "new_password": "attacker-chosen"}
    response = client.post("/password", headers=auth(tokens["access_token"]), json=change)
    assert response.status_code == 401
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204
    login(client)  # the old password still works
    assert publisher.names() == ["block_subject", "unblock_subject"]


class SdkPublisher(RecordingPublisher):
    """Delivers the subject watermark to a real consumer SDK (in memory)."""

    def __init__(self, source: InMemorySource) -> None:
        super().__init__()
        self.source = source

    def revoke_subject(self, sub: str, **kw: Any) -> None:
        super().revoke_subject(sub, **kw)
        at: datetime = kw["issued_before"]
        self.source.publish(
            SubjectTokensRevoked(
                issuer="idp", sub=sub, issued_before=at, expires_at=at + timedelta(hours=1)
            )
        )

    def delete_subject(self, sub: str, **kw: Any) -> None:
        super().delete_subject(sub, **kw)
        until = datetime.now(UTC) + timedelta(hours=1)
        self.source.publish(SubjectDeleted(issuer="idp", sub=sub, expires_at=until))


def sdk_settings_for(client: TestClient, settings: IdentitySettings) -> ConsumerSettings:
    """A service's SDK that trusts the identity service's current JWKS."""
    jwt_keys = {
        k["kid"]: jwt.PyJWK(k).key.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        for k in client.get("/.well-known/jwks.json").json()["keys"]
    }
    return ConsumerSettings(
        algorithms=("RS256",),
        jwt_keys=jwt_keys,
        event_keys=(SigningKey.hmac("ev1", b"e" * 32).verification_key(),),
        audience=("revocast-demo",),
        issuer=settings.issuer,
    )


def test_the_sdk_refuses_a_token_from_the_instant_before_a_password_change_not_one_after(
    tmp_path: Path, clock: Clock
) -> None:
    source = InMemorySource()
    publisher = SdkPublisher(source)
    settings = idp_settings(tmp_path)
    client = TestClient(create_app(settings, publisher, clock=clock, users={"alice": "pw-old!"}))
    with Revocast(sdk_settings_for(client, settings), source=source, clock=clock) as sdk:
        source.set_ready()
        before = login(client, "pw-old!")["access_token"]
        change = {"old_password": "pw-old!", "new_password": "pw-new-123"}
        assert client.post("/password", headers=auth(before), json=change).is_success
        clock.now += 0.001  # a login costs a scrypt: at least this much later
        after = client.post("/login", json={"username": "alice", "password": "pw-new-123"})

        with pytest.raises(TokenRevokedError):
            sdk.verify(before)
        assert sdk.verify(after.json()["access_token"])["sub"] == "alice"


def test_tokens_that_would_outlive_their_revocation_entries_are_refused_at_startup(
    tmp_path: Path,
) -> None:
    # The publisher stamps each revocation expires_at = now + max_token_lifetime, and services
    # forget it then: a longer access-token TTL would let revoked tokens work again.
    publisher = RecordingPublisher()
    publisher.settings = SimpleNamespace(max_token_lifetime=900.0)  # type: ignore[attr-defined]
    too_long = idp_settings(tmp_path, access_token_ttl=3600)
    with pytest.raises(SettingsError, match="access_token_ttl"):
        create_app(too_long, publisher)
    fits = idp_settings(tmp_path, access_token_ttl=900)
    create_app(fits, publisher)


def test_a_restart_with_the_seed_users_keeps_their_password_version_and_block(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # Seeding used INSERT OR REPLACE: every restart reset a changed (perhaps leaked) password to
    # the seed, unblocked the user and reset ver to 0, below the min_version services enforce.
    settings = idp_settings(tmp_path)
    seed = {"alice": "correct horse", "bob": "bob-password"}
    first = TestClient(create_app(settings, publisher, clock=clock, users=seed))
    tokens = login(first)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    assert first.post("/password", headers=auth(tokens["access_token"]), json=change).is_success
    assert first.post("/admin/users/alice/permissions", headers=auth(ADMIN)).is_success
    assert first.post("/admin/users/bob/block", headers=auth(ADMIN)).is_success

    restarted = TestClient(create_app(settings, publisher, clock=clock, users=seed))

    old = restarted.post("/login", json={"username": "alice", "password": "correct horse"})
    assert old.status_code == 401
    assert claims_of(restarted, login(restarted, "battery staple")["access_token"])["ver"] == 1
    bob = restarted.post("/login", json={"username": "bob", "password": "bob-password"})
    assert bob.status_code == 401  # still blocked, refused as a wrong password is


def stored_hash(client: TestClient, username: str = "alice") -> str:
    user = client.app.state.store.user(username)  # type: ignore[attr-defined]
    assert user is not None
    password_hash: str = user.password_hash
    return password_hash


def test_a_password_hashed_at_an_older_cost_still_logs_in_and_is_rehashed_at_the_current_one(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    old = TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))
    assert stored_hash(old).startswith(f"scrypt${FAST}$8$1$")
    raised = idp_settings(tmp_path, scrypt_n=FAST * 2, scrypt_r=4)

    client = TestClient(create_app(raised, publisher, clock=clock, users=SEED))

    assert stored_hash(client).startswith(f"scrypt${FAST}$8$1$")  # no password to re-hash yet
    refused = client.post("/login", json={"username": "alice", "password": "wrong"})
    assert refused.status_code == 401
    assert stored_hash(client).startswith(f"scrypt${FAST}$8$1$")
    login(client)
    assert stored_hash(client).startswith(f"scrypt${FAST * 2}$4$1$")
    login(client)  # and the new hash verifies


def test_a_login_rehashing_the_old_password_does_not_undo_a_password_change_meanwhile(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The re-hash is written after the tokens are issued; a password change committing in
    # between must keep the new password, or whoever knew the old one gets the account back.
    TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))
    app = create_app(idp_settings(tmp_path, scrypt_n=FAST * 2), publisher, clock=clock)
    client = TestClient(app)
    store = app.state.store
    victim = login(client)  # re-hashed now; put the old-cost hash back for the race
    store.set_password("alice", hash_password("correct horse", Scrypt(n=FAST)))
    real_add = store.add_refresh_token
    change = {"old_password": "correct horse", "new_password": "battery staple"}

    def add_then_the_password_changes(*args: Any, **kwargs: Any) -> bool:
        added: bool = real_add(*args, **kwargs)
        monkeypatch.setattr(store, "add_refresh_token", real_add)
        changed = client.post("/password", headers=auth(victim["access_token"]), json=change)
        assert changed.is_success
        return added

    monkeypatch.setattr(store, "add_refresh_token", add_then_the_password_changes)
    raced = client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert raced.status_code == 200

    assert store.add_refresh_token == real_add  # the race ran
    assert verify_password("battery staple", stored_hash(client))
    old = client.post("/login", json={"username": "alice", "password": "correct horse"})
    assert old.status_code == 401


def attempt(client: TestClient, username: str, password: str) -> Any:
    return client.post("/login", json={"username": username, "password": password})


@pytest.mark.parametrize("username", ["alice", "mallory"])
def test_online_password_guessing_is_refused_with_429_after_five_failures_known_user_or_not(
    client: TestClient, clock: Clock, monkeypatch: pytest.MonkeyPatch, username: str
) -> None:
    for guess in range(5):
        assert attempt(client, username, f"guess-{guess}").status_code == 401
    hashes: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        hashes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    clock.now += 100
    refused = attempt(client, username, "correct horse")  # even the right password
    assert refused.status_code == 429
    assert refused.json() == {"detail": "too many failed logins; try again later"}
    assert refused.headers["Retry-After"] == "800"  # same answer and cost for every name
    assert hashes == []
    monkeypatch.undo()
    clock.now += 800
    assert attempt(client, username, "correct horse").status_code == (
        200 if username == "alice" else 401
    )


def test_one_client_spraying_a_password_over_many_usernames_is_refused(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    settings = idp_settings(tmp_path, login_failures_per_client=3)
    app = create_app(settings, publisher, clock=clock, users=SEED)
    sprayer = TestClient(app, client=("203.0.113.7", 4000))
    for name in ("bob", "carol", "dave"):
        assert attempt(sprayer, name, "Summer2026!").status_code == 401
    assert attempt(sprayer, "alice", "Summer2026!").status_code == 429
    login(TestClient(app, client=("198.51.100.2", 4000)))  # others are not locked out


def test_a_success_does_not_reset_failures_so_logins_cannot_buy_more_guesses(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # Neither the victim's own logins (which would reset the username's count for an attacker
    # elsewhere) nor the attacker's logins to an account of their own (the client's count).
    settings = idp_settings(tmp_path, login_failures_per_client=6)
    users = {"alice": "correct horse", "mallory": "mallory-pw"}
    app = create_app(settings, publisher, clock=clock, users=users)
    attacker = TestClient(app, client=("203.0.113.7", 4000))
    victim = TestClient(app, client=("198.51.100.2", 4000))
    for guess in range(5):
        login(victim)
        assert attempt(attacker, "alice", f"guess-{guess}").status_code == 401
    assert attempt(attacker, "alice", "guess-5").status_code == 429  # alice's 5, not reset
    assert attempt(attacker, "mallory", "mallory-pw").status_code == 200
    assert attempt(attacker, "bob", "guess-6").status_code == 401  # the client's 6th failure
    assert attempt(attacker, "mallory", "mallory-pw").status_code == 429


def test_guesses_sent_while_earlier_ones_are_still_hashing_count_against_the_limit(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counting only failures that finished would let a burst of parallel requests (one per
    # threadpool worker) all pass the check before the first scrypt ends.
    statuses: list[int] = []

    def verify_while_more_guesses_arrive(password: str, stored: str) -> bool:
        if not statuses:
            statuses.append(0)
            statuses.extend(attempt(client, "alice", f"burst-{i}").status_code for i in range(5))
        return verify_password(password, stored)

    monkeypatch.setattr(
        "identity_service._passwords.verify_password", verify_while_more_guesses_arrive
    )
    assert attempt(client, "alice", "first").status_code == 401
    assert statuses[1:] == [401, 401, 401, 401, 429]


def test_deleting_an_account_makes_services_refuse_its_tokens_and_ends_its_refresh_tokens(
    tmp_path: Path, clock: Clock
) -> None:
    source = InMemorySource()
    publisher = SdkPublisher(source)
    settings = idp_settings(tmp_path)
    client = TestClient(create_app(settings, publisher, clock=clock, users=SEED))
    with Revocast(sdk_settings_for(client, settings), source=source, clock=clock) as sdk:
        source.set_ready()
        tokens = login(client)
        assert sdk.verify(tokens["access_token"])["sub"] == "alice"

        deleted = client.delete("/admin/users/alice", headers=auth(ADMIN))

        assert deleted.status_code == 204
        assert publisher.calls == [("delete_subject", ("alice",), {"reason": "account_deleted"})]
        with pytest.raises(TokenRevokedError) as refused:
            sdk.verify(tokens["access_token"])
        assert refused.value.rule is RevokedBy.DELETED
    refresh = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    assert client.post("/logout", headers=auth(tokens["access_token"])).status_code == 401
    assert attempt(client, "alice", "correct horse").status_code == 401
    assert client.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 404


def test_deleting_an_account_needs_the_admin_token(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    user_token = login(client)["access_token"]
    for headers in ({}, auth("x" * 32), auth(user_token)):
        assert client.delete("/admin/users/alice", headers=headers).status_code == 403
    assert publisher.calls == []
    login(client)


def test_an_account_whose_deletion_was_not_published_stays_so_the_retry_publishes_it(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # Deleted first, the retry would answer 404 while every service still accepts its tokens.
    app = create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED)
    client = TestClient(app, raise_server_exceptions=False)
    tokens = login(client)

    def broken(sub: str, **kw: Any) -> None:
        raise RuntimeError("Kafka is down")

    publisher.delete_subject = broken  # type: ignore[method-assign]
    assert client.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 500
    del publisher.delete_subject

    assert client.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 204
    assert publisher.names() == ["delete_subject"]
    refresh = client.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401


def test_a_login_that_verified_the_password_while_the_account_was_deleted_gets_no_session(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED)
    client = TestClient(app)

    def verify_while_the_account_is_deleted(password: str, stored: str) -> bool:
        assert client.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 204
        return verify_password(password, stored)

    monkeypatch.setattr(
        "identity_service._passwords.verify_password", verify_while_the_account_is_deleted
    )
    assert attempt(client, "alice", "correct horse").status_code == 401


def test_a_deleted_accounts_refresh_token_does_not_resume_for_an_account_recreated_by_its_name(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # The refresh token outlives the services' deletion rule (a day against the access-token
    # lifetime): kept in the store, it would open a session for whoever holds the name next.
    first = TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))
    tokens = login(first)
    assert first.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 204

    again = TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))

    refresh = again.post("/token/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert refresh.status_code == 401
    login(again)  # the re-created account itself works


def test_guessing_the_old_password_with_a_stolen_access_token_is_throttled_like_login(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    stolen = login(client)["access_token"]
    for guess in range(5):
        change = {"old_password": f"guess-{guess}", "new_password": "attacker-chosen"}
        assert client.post("/password", headers=auth(stolen), json=change).status_code == 403
    hashes: list[int] = []
    real = hashlib.scrypt

    def counting(*args: Any, **kwargs: Any) -> bytes:
        hashes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", counting)
    right = {"old_password": "correct horse", "new_password": "attacker-chosen"}
    assert client.post("/password", headers=auth(stolen), json=right).status_code == 429
    assert attempt(client, "alice", "correct horse").status_code == 429  # one budget for both
    assert hashes == []


class BlockingHasher:
    """scrypt at the tests' cost; once ``armed``, each verify signals ``entered`` and waits for
    ``release``, so a test knows exactly how many hashes are running."""

    def __init__(self) -> None:
        self.cost = Scrypt(n=FAST)
        self.armed = False
        self.entered = threading.Semaphore(0)
        self.release = threading.Event()
        self.verified: list[str] = []

    def hash(self, password: str) -> str:
        return self.cost.hash(password)

    def verify(self, password: str, stored: str) -> bool:
        if self.armed:
            self.verified.append(password)
            self.entered.release()
            assert self.release.wait(timeout=10), "the test never released the hash"
        return self.cost.verify(password, stored)

    def needs_rehash(self, stored: str) -> bool:
        return self.cost.needs_rehash(stored)


@pytest.mark.parametrize("username", ["alice", "mallory"])
def test_a_login_beyond_the_hashes_allowed_at_once_gets_503_and_is_not_counted_as_a_failure(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, username: str
) -> None:
    # Memory DoS: each hash holds 128 MiB at the default cost, and 40 worker threads hashing at
    # once need ~5 GiB. The answer must be the same for a known and an unknown name.
    hasher = BlockingHasher()
    settings = idp_settings(tmp_path, max_concurrent_hashes=2, hash_slot_wait=0.01)
    client = TestClient(create_app(settings, publisher, clock=clock, users=SEED, hasher=hasher))
    hasher.armed = True
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(attempt, client, username, f"guess-{i}") for i in range(2)]
        for _ in running:
            assert hasher.entered.acquire(timeout=10)
        refused = attempt(client, username, "correct horse")
        hasher.release.set()
        assert [f.result(timeout=10).status_code for f in running] == [401, 401]

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert refused.json() == {"detail": "too many logins in progress; try again shortly"}
    assert sorted(hasher.verified) == ["guess-0", "guess-1"]  # no password checked
    # Not a failure: the window's 5 are the 2 above and 3 more, then 429.
    for guess in range(2, 5):
        assert attempt(client, username, f"guess-{guess}").status_code == 401
    assert attempt(client, username, "guess-5").status_code == 429


def test_a_password_change_beyond_the_hashes_allowed_at_once_gets_503_and_changes_nothing(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    hasher = BlockingHasher()
    settings = idp_settings(tmp_path, max_concurrent_hashes=1, hash_slot_wait=0.01)
    client = TestClient(create_app(settings, publisher, clock=clock, users=SEED, hasher=hasher))
    tokens = login(client)
    hasher.armed = True
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(attempt, client, "mallory", "guess")
        assert hasher.entered.acquire(timeout=10)
        refused = client.post("/password", headers=auth(tokens["access_token"]), json=change)
        hasher.release.set()
        assert running.result(timeout=10).status_code == 401

    assert refused.status_code == 503
    assert refused.headers["Retry-After"] == "1"
    assert publisher.calls == []
    assert hasher.verified == ["guess"]
    login(client)  # the old password still works, and alice's count has room left
    for guess in range(5):
        assert attempt(client, "alice", f"guess-{guess}").status_code == 401


def test_a_wrong_password_costs_a_current_hash_even_for_an_account_stored_at_an_older_cost(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Timing user enumeration during a cost migration: a hash from before the upgrade failed a
    # wrong password in a fraction of the current-cost decoy an unknown name costs, telling
    # which accounts exist (and have not logged in since).
    TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))
    current = FAST * 4
    app = create_app(idp_settings(tmp_path, scrypt_n=current), publisher, clock=clock)
    client = TestClient(app)
    costs: list[int] = []
    real = hashlib.scrypt

    def recording(*args: Any, **kwargs: Any) -> bytes:
        costs.append(kwargs["n"])
        return real(*args, **kwargs)

    def cost_of(username: str, password: str, status_code: int) -> list[int]:
        costs.clear()
        assert attempt(client, username, password).status_code == status_code
        return sorted(costs)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    assert cost_of("mallory", "wrong", 401) == [current]
    assert cost_of("alice", "wrong", 401) == [FAST, current]
    assert stored_hash(client).startswith(f"scrypt${FAST}$")  # a failure stores nothing
    # Verified at its own cost, stored again at the current one: the same work as a failure.
    assert cost_of("alice", "correct horse", 200) == [FAST, current]
    assert stored_hash(client).startswith(f"scrypt${current}$")
    assert cost_of("alice", "wrong", 401) == [current]
    assert cost_of("alice", "correct horse", 200) == [current]
    app.state.store.set_password("alice", "unreadable")  # refused without computing it
    assert cost_of("alice", "wrong", 401) == [current]


def answer(response: Any) -> tuple[int, dict[str, str], bytes]:
    """Everything a client sees of a response (TestClient adds no Date header)."""
    return response.status_code, dict(response.headers), response.content


def test_a_blocked_account_answers_its_right_password_exactly_as_a_wrong_one(
    client: TestClient,
) -> None:
    # Password oracle: "403 account blocked" to the right password and 401 to a wrong one
    # confirmed each guess, and the password may be reused elsewhere.
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204

    right = attempt(client, "alice", "correct horse")
    wrong = attempt(client, "alice", "wrong")

    assert answer(right) == answer(wrong) == answer(attempt(client, "mallory", "wrong"))
    assert right.status_code == 401
    assert right.json() == {"detail": "invalid credentials"}


def test_a_blocked_accounts_right_password_counts_as_a_failure_so_the_throttle_tells_nothing(
    client: TestClient,
) -> None:
    # Refunded, the right password left the count one lower than a wrong one: the next
    # attempt at the limit was let through instead of 429, confirming the guess.
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    for guess in ("guess-0", "guess-1", "guess-2", "guess-3", "correct horse"):
        assert attempt(client, "alice", guess).status_code == 401
    assert attempt(client, "alice", "guess-4").status_code == 429


def test_a_deleted_account_answers_like_a_name_that_never_existed(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert client.delete("/admin/users/alice", headers=auth(ADMIN)).status_code == 204
    hashes: list[int] = []
    real = hashlib.scrypt

    def recording(*args: Any, **kwargs: Any) -> bytes:
        hashes.append(kwargs["n"])
        return real(*args, **kwargs)

    def seen(username: str, password: str) -> tuple[tuple[int, dict[str, str], bytes], list[int]]:
        hashes.clear()
        return answer(attempt(client, username, password)), sorted(hashes)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    unknown = seen("mallory", "correct horse")
    assert seen("alice", "correct horse") == seen("alice", "wrong") == unknown
    (status_code, _, content), hashes_of_unknown = unknown
    assert (status_code, content, hashes_of_unknown) == (
        401,
        b'{"detail":"invalid credentials"}',
        [FAST],
    )


@pytest.mark.parametrize("cost", ["current", "older"])
def test_every_refused_login_costs_the_same_hashes_for_a_blocked_account_right_or_wrong(
    tmp_path: Path,
    publisher: RecordingPublisher,
    clock: Clock,
    monkeypatch: pytest.MonkeyPatch,
    cost: str,
) -> None:
    # Refusing a blocked account before hashing would make its answer quicker than a wrong
    # password's or an unknown name's: the block (and so the name) would show in the timing.
    TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=SEED))
    current = FAST if cost == "current" else FAST * 2
    client = TestClient(
        create_app(idp_settings(tmp_path, scrypt_n=current), publisher, clock=clock)
    )
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    hashes: list[int] = []
    real = hashlib.scrypt

    def recording(*args: Any, **kwargs: Any) -> bytes:
        hashes.append(kwargs["n"])
        return real(*args, **kwargs)

    def cost_of(username: str, password: str) -> list[int]:
        hashes.clear()
        assert attempt(client, username, password).status_code == 401
        return sorted(hashes)

    monkeypatch.setattr(hashlib, "scrypt", recording)
    right = cost_of("alice", "correct horse")
    assert right == cost_of("alice", "wrong")
    assert right == ([current] if cost == "current" else [FAST, current])
    assert cost_of("mallory", "wrong") == [current]
    assert stored_hash(client).startswith(f"scrypt${FAST}$")  # not re-hashed: refused


def test_the_server_log_keeps_the_real_reason_of_each_refused_login_but_no_password(
    tmp_path: Path,
    publisher: RecordingPublisher,
    clock: Clock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    users = {"alice": "correct horse", "carol": "carol-password"}
    client = TestClient(create_app(idp_settings(tmp_path), publisher, clock=clock, users=users))
    assert client.post("/admin/users/carol/block", headers=auth(ADMIN)).status_code == 204
    tries = [
        ("alice", "not-alices"),
        ("carol", "carol-password"),
        ("carol", "not-carols"),
        ("mallory", "unknown-names"),
        ("correct horse", "x-1"),  # alice's password typed into the name field
        ("mallory", "again"),
    ]
    with caplog.at_level(logging.INFO, logger="identity_service"):
        for username, password in tries:
            assert attempt(client, username, password).status_code == 401
        login(client)

    refusals = [r for r in caplog.records if r.name == "identity_service"]
    messages = [r.getMessage() for r in refusals]
    assert messages[:3] == [
        "login refused: wrong password (username 'alice', client testclient)",
        "login refused: account blocked, right password (username 'carol', client testclient)",
        "login refused: wrong password, account blocked (username 'carol', client testclient)",
    ]
    # A name that is no account's (a mistyped password, often) is logged as a fingerprint:
    # the same name the same, another name another, the text never.
    pattern = r"login refused: no such user \(username (#[0-9a-f]{12}), client testclient\)"
    unknown = [re.fullmatch(pattern, m) for m in messages[3:]]
    assert all(unknown), messages[3:]
    first, typed_password, again = (m.group(1) for m in unknown if m)
    assert first == again != typed_password
    assert {r.levelno for r in refusals} == {logging.WARNING}  # one level: no timing tell
    assert "mallory" not in caplog.text
    assert not any(p in caplog.text for _, p in [*tries, ("alice", "correct horse")])


def test_a_right_password_whose_account_was_blocked_during_the_login_stays_counted(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Only a login that returns tokens is refunded: one refused because the block committed
    # while its password was being checked must not be told apart from a wrong guess either.
    def verify_while_the_account_is_blocked(password: str, stored: str) -> bool:
        monkeypatch.undo()
        assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
        return verify_password(password, stored)

    monkeypatch.setattr(
        "identity_service._passwords.verify_password", verify_while_the_account_is_blocked
    )
    raced = attempt(client, "alice", "correct horse")
    assert answer(raced) == answer(attempt(client, "mallory", "wrong"))
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204
    for guess in range(4):
        assert attempt(client, "alice", f"guess-{guess}").status_code == 401
    assert attempt(client, "alice", "correct horse").status_code == 429


def test_an_unblock_published_after_a_block_that_committed_later_is_followed_by_the_block(
    client: TestClient, publisher: RecordingPublisher, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Race between two admin calls: the unblock commits, then the block commits and publishes,
    # then the unblock publishes. Services keep the last one published (by occurred_at): the
    # account stayed blocked here while every service accepted its tokens again.
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    real_unblock = publisher.unblock_subject
    raced: list[int] = []

    def block_commits_and_publishes_first(sub: str, **kw: Any) -> None:
        if not raced:
            raced.append(1)
            assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
        real_unblock(sub, **kw)

    monkeypatch.setattr(publisher, "unblock_subject", block_commits_and_publishes_first)
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204

    assert raced
    assert app_user(client, "alice").blocked
    assert publisher.names()[-1] == "block_subject"
    assert publisher.calls[-1] == ("block_subject", ("alice",), {"reason": "admin_block"})


def test_block_and_unblock_publish_once_when_nothing_races_them(
    client: TestClient, publisher: RecordingPublisher
) -> None:
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 204
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204
    assert publisher.calls == [
        ("block_subject", ("alice",), {"reason": "admin_block"}),
        ("unblock_subject", ("alice",), {"reason": "admin_unblock"}),
    ]


def app_user(client: TestClient, name: str) -> Any:
    app: Any = client.app
    return app.state.store.user(name)


def test_a_password_change_that_cannot_end_the_sessions_does_not_change_the_password(
    tmp_path: Path, publisher: RecordingPublisher, clock: Clock
) -> None:
    # The new password was committed before the sessions were ended, in another transaction:
    # when that one failed (database locked, disk full), the password had changed, nothing was
    # published, the user's retry was refused (wrong old password) and the thief's refresh
    # token went on minting access tokens under the new password.
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=clock, users={"alice": "correct horse"})
    client = TestClient(app, raise_server_exceptions=False)
    stolen = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    with sqlite3.connect(settings.db_path) as db:
        db.execute(
            "CREATE TRIGGER fail_revoke BEFORE UPDATE ON families "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    failed = client.post("/password", headers=auth(stolen["access_token"]), json=change)
    assert failed.status_code == 500
    with sqlite3.connect(settings.db_path) as db:
        db.execute("DROP TRIGGER fail_revoke")

    assert publisher.calls == []
    retry = client.post("/password", headers=auth(stolen["access_token"]), json=change)
    assert retry.status_code == 204
    refreshed = client.post("/token/refresh", json={"refresh_token": stolen["refresh_token"]})
    assert refreshed.status_code == 401


@pytest.mark.parametrize("end", ["/logout", "/logout-everywhere", "/password"])
def test_a_token_whose_session_ended_is_refused_by_the_identity_services_own_endpoints(
    client: TestClient, publisher: RecordingPublisher, end: str
) -> None:
    # Only the signature was checked: a logged-out (or stolen, then logged-out-everywhere)
    # access token could still log out, end every session or guess the password here.
    tokens = login(client)
    change = {"old_password": "correct horse", "new_password": "battery staple"}
    body = change if end == "/password" else None
    assert client.post(end, headers=auth(tokens["access_token"]), json=body).status_code == 204
    published = list(publisher.calls)

    for path in ("/logout", "/logout-everywhere", "/password"):
        response = client.post(path, headers=auth(tokens["access_token"]), json=change)
        assert response.status_code == 401, path
        assert response.json()["detail"] == "session ended"
    assert publisher.calls == published
