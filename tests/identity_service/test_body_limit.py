from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from identity_service import IdentitySettings, create_app
from identity_service._body_limit import MAX_BODY_BYTES


class NoPublisher:
    pass


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    settings = IdentitySettings(
        db_path=tmp_path / "idp.sqlite3", admin_token="a" * 32, scrypt_n=2**10
    )
    return TestClient(create_app(settings, NoPublisher()))  # type: ignore[arg-type]


JSON = {"content-type": "application/json"}


def test_a_body_larger_than_any_request_needs_is_refused_before_it_is_parsed(
    client: TestClient,
) -> None:
    huge = b'{"username": "alice", "password": "' + b"p" * (1 << 20) + b'"}'
    response = client.post("/login", content=huge, headers=JSON)
    assert response.status_code == 413
    assert b"p" * 64 not in response.content


def test_a_chunked_body_without_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"username": "alice", "password": "'
        for _ in range(MAX_BODY_BYTES // 16_384 + 1):
            yield b"p" * 16_384
        yield b'"}'

    response = client.post("/login", content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_a_body_within_the_limit_reaches_the_route(client: TestClient) -> None:
    response = client.post("/login", json={"username": "nobody", "password": "x"})
    assert response.status_code == 401
