"""The revocations the store owes: retried while served, never held back by one failure, and
a replayed block or unblock ends with what the store holds."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from identity_service import create_app
from tests.identity_service.test_app import (
    ADMIN,
    Clock,
    RecordingPublisher,
    auth,
    idp_settings,
    login,
)


class FlakyPublisher(RecordingPublisher):
    """Raises for the methods named in ``down``; signals ``called`` on each recorded call."""

    def __init__(self) -> None:
        super().__init__()
        self.down: set[str] = set()
        self.called = threading.Event()

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        if name in self.down:
            raise RuntimeError("Kafka is down")
        super()._record(name, *args, **kwargs)
        self.called.set()


def test_a_revocation_whose_publisher_failed_is_retried_while_the_app_is_served(
    tmp_path: Path,
) -> None:
    publisher = FlakyPublisher()
    settings = idp_settings(tmp_path, revocation_retry_interval=0.01)
    app = create_app(settings, publisher, users={"alice": "correct horse"})
    with TestClient(app, raise_server_exceptions=False) as client:
        tokens = login(client)
        publisher.down.add("revoke_session")
        assert client.post("/logout", headers=auth(tokens["access_token"])).status_code == 503
        publisher.called.clear()
        publisher.down.clear()

        assert publisher.called.wait(10), "the retry thread never published the logout"

    assert publisher.names() == ["revoke_session"]
    assert app.state.store.pending() == []


def test_a_revocation_that_keeps_failing_does_not_hold_back_later_ones(tmp_path: Path) -> None:
    publisher = FlakyPublisher()
    app = create_app(idp_settings(tmp_path), publisher, clock=Clock(), users={"alice": "pw-1"})
    client = TestClient(app, raise_server_exceptions=False)
    publisher.down.add("block_subject")
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 503
    publisher.down.add("bump_subject_version")
    response = client.post("/admin/users/alice/permissions", headers=auth(ADMIN))
    assert response.status_code == 503
    publisher.down.discard("bump_subject_version")

    assert app.state.outbox.publish_all() == 1

    assert publisher.calls == [
        ("bump_subject_version", ("alice",), {"min_version": 1, "reason": "permissions_changed"})
    ]
    assert [p.revocation.kind for p in app.state.store.pending()] == ["block"]


def test_a_block_published_late_is_followed_by_the_unblock_committed_after_it(
    tmp_path: Path,
) -> None:
    # The block's publication failed, the unblock committed and published; the retry of the
    # block alone would leave every service refusing an account that is active here.
    publisher = FlakyPublisher()
    app = create_app(idp_settings(tmp_path), publisher, clock=Clock(), users={"alice": "pw-1"})
    client = TestClient(app, raise_server_exceptions=False)
    publisher.down.add("block_subject")
    assert client.post("/admin/users/alice/block", headers=auth(ADMIN)).status_code == 503
    publisher.down.clear()
    assert client.post("/admin/users/alice/unblock", headers=auth(ADMIN)).status_code == 204

    assert app.state.outbox.publish_all() == 0

    assert publisher.names() == ["unblock_subject", "block_subject", "unblock_subject"]


def test_revocations_a_failed_publisher_left_are_published_by_the_next_start(
    tmp_path: Path,
) -> None:
    publisher = FlakyPublisher()
    settings = idp_settings(tmp_path)
    app = create_app(settings, publisher, clock=Clock(), users={"alice": "pw-1"})
    client = TestClient(app, raise_server_exceptions=False)
    publisher.down.add("revoke_subject")
    tokens = client.post("/login", json={"username": "alice", "password": "pw-1"}).json()
    everywhere = client.post("/logout-everywhere", headers=auth(tokens["access_token"]))
    assert everywhere.status_code == 503
    (owed,) = app.state.store.pending()

    restarted = RecordingPublisher()
    create_app(settings, restarted, clock=Clock())

    assert restarted.calls == [
        (
            "revoke_subject",
            ("alice",),
            {"issued_before": owed.revocation.issued_before, "reason": "logout_everywhere"},
        )
    ]
