"""The identity service in a process that is SIGKILLed while it publishes (``test_crash.py``).

Run as ``python -m tests.identity_service._crash_child DB_PATH``: it performs one of each state
change that publishes a revocation, each in its own thread whose publisher call never returns,
prints every such call as a JSON line, then ``ready``, and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from identity_service import IdentitySettings, create_app

ADMIN = "admin-token-for-crash-tests-0123"
USERS = ["logout", "everywhere", "password", "permissions", "block", "reuse"]
PASSWORD = "correct horse"


def settings(db_path: Path) -> IdentitySettings:
    return IdentitySettings(db_path=db_path, admin_token=ADMIN, scrypt_n=2**10)


class JsonRecorder:
    """A publisher that keeps each call as ``[method, args, kwargs]`` in JSON form."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        plain = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in kwargs.items()}
        self.calls.append(json.loads(json.dumps([name, list(args), plain])))

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


class StuckPublisher(JsonRecorder):
    """Prints each call, then never returns: the process dies inside the publisher."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Semaphore(0)

    def _record(self, name: str, *args: Any, **kwargs: Any) -> None:
        super()._record(name, *args, **kwargs)
        print(json.dumps(self.calls[-1]), flush=True)
        self.entered.release()
        threading.Event().wait()


def main(db_path: Path) -> None:
    publisher = StuckPublisher()
    app = create_app(settings(db_path), publisher, users=dict.fromkeys(USERS, PASSWORD))
    client = TestClient(app)
    admin = {"Authorization": f"Bearer {ADMIN}"}

    def login(name: str) -> dict[str, Any]:
        body: dict[str, Any] = client.post(
            "/login", json={"username": name, "password": PASSWORD}
        ).json()
        return body

    def bearer(name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {login(name)['access_token']}"}

    reused = login("reuse")["refresh_token"]
    client.post("/token/refresh", json={"refresh_token": reused})
    kid = client.get("/.well-known/jwks.json").json()["keys"][0]["kid"]
    change = {"old_password": PASSWORD, "new_password": "battery staple"}
    sessions = {name: bearer(name) for name in ("logout", "everywhere", "password")}
    actions: list[Callable[[], object]] = [
        lambda: client.post("/logout", headers=sessions["logout"]),
        lambda: client.post("/logout-everywhere", headers=sessions["everywhere"]),
        lambda: client.post("/password", headers=sessions["password"], json=change),
        lambda: client.post("/admin/users/permissions/permissions", headers=admin),
        lambda: client.post("/admin/users/block/block", headers=admin),
        lambda: client.post("/token/refresh", json={"refresh_token": reused}),
        lambda: client.post(f"/admin/keys/{kid}/revoke", headers=admin),
    ]
    for action in actions:
        threading.Thread(target=action, daemon=True).start()
        publisher.entered.acquire()  # one at a time: the order of the calls is known
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
