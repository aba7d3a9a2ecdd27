"""The scenario's checks fail when a revocation does not reach the services.

A fake stack stands in for the processes: an identity service that revokes tokens and three
services that refuse the revoked ones, but only when ``delivery`` is on. With delivery off the
identity service still answers every call, as it does when Kafka or the SDK is broken.
"""

from __future__ import annotations

import itertools
import json
import threading
from typing import Any

import httpx
import jwt
import pytest

from revocast.demo import ScenarioFailed, StackConfig, run_scenario
from revocast.demo._stack import DEMO_PASSWORD, DEMO_USERS

SERVICES = [
    ("orders", "http://orders.test"),
    ("billing", "http://billing.test"),
    ("inventory", "http://inventory.test"),
]
CFG = StackConfig(admin_token="admin-token")


class FakeStack:
    def __init__(self, *, delivery: bool) -> None:
        self.delivery = delivery
        self._lock = threading.Lock()
        self._serial = itertools.count()
        self._kid = "k1"
        self._passwords = dict.fromkeys(DEMO_USERS, DEMO_PASSWORD)
        self._issued: dict[str, tuple[str, str]] = {}  # access token -> (user, kid)
        self._refresh: dict[str, tuple[str, bool]] = {}  # refresh token -> (family, used)
        self._families: dict[str, list[str]] = {}  # family -> access tokens
        self._revoked: set[str] = set()  # what the services have received

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self._handle)

    def _pair(self, user: str, family: str | None = None) -> dict[str, str]:
        serial = next(self._serial)
        access = jwt.encode(
            {"sub": user, "n": serial}, "k" * 32, algorithm="HS256", headers={"kid": self._kid}
        )
        refresh = f"refresh-{serial}"
        family = family or refresh
        self._issued[access] = (user, self._kid)
        self._refresh[refresh] = (family, False)
        self._families.setdefault(family, []).append(access)
        return {"access_token": access, "refresh_token": refresh}

    def _revoke(self, tokens: list[str]) -> httpx.Response:
        if self.delivery:
            self._revoked.update(tokens)
        return httpx.Response(200, json={})

    def _of_user(self, user: str) -> list[str]:
        return [t for t, (u, _) in self._issued.items() if u == user]

    def _handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            return self._route(request)

    def _route(self, request: httpx.Request) -> httpx.Response:
        host, path = request.url.host, request.url.path
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        body: dict[str, Any] = json.loads(request.content) if request.content else {}
        if host != "127.0.0.1":
            ok = bearer in self._issued and bearer not in self._revoked
            return httpx.Response(200 if ok else 401, json={})
        if path == "/login":
            if self._passwords.get(body["username"]) != body["password"]:
                return httpx.Response(401, json={})
            return httpx.Response(200, json=self._pair(body["username"]))
        if path == "/logout":
            return self._revoke([bearer])
        if path == "/password":
            user = self._issued[bearer][0]
            self._passwords[user] = body["new_password"]
            return self._revoke(self._of_user(user))
        if path == "/token/refresh":
            family, used = self._refresh[body["refresh_token"]]
            if used:
                self._revoke(self._families[family])
                return httpx.Response(401, json={})
            self._refresh[body["refresh_token"]] = (family, True)
            return httpx.Response(
                200, json=self._pair(self._issued[self._families[family][0]][0], family)
            )
        assert bearer == CFG.admin_token
        parts = path.strip("/").split("/")  # admin/users/<user>/<action> or admin/keys/<kid>/…
        if parts[1] == "keys":
            revoked = [t for t, (_, kid) in self._issued.items() if kid == parts[2]]
            self._kid = f"{parts[2]}-next"
            return self._revoke(revoked)
        if parts[3] == "unblock":
            return httpx.Response(200, json={})
        return self._revoke(self._of_user(parts[2]))


def test_the_scenario_passes_when_every_revocation_reaches_every_service() -> None:
    lines: list[str] = []
    outcomes = run_scenario(
        CFG,
        SERVICES,
        lines.append,
        revocation_timeout=2.0,
        transport=FakeStack(delivery=True).transport(),
    )
    assert all(o.ok for o in outcomes)
    assert len([o for o in outcomes if o.latency_ms is not None]) == 6 * len(SERVICES)
    assert not [line for line in lines if "FAIL" in line]


def test_the_scenario_fails_every_revocation_check_when_revocations_are_not_delivered() -> None:
    lines: list[str] = []
    with pytest.raises(ScenarioFailed, match="18 of 51 checks failed"):
        run_scenario(
            CFG,
            SERVICES,
            lines.append,
            revocation_timeout=0.05,
            transport=FakeStack(delivery=False).transport(),
        )
    failed = [line for line in lines if "FAIL" in line]
    assert len(failed) == 6 * len(SERVICES)
    assert all("expected 401 got 200" in line for line in failed)
    assert "33/51 checks passed" in lines
