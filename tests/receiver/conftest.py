from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from receiver import (
    LogoutSettings,
    PollSettings,
    Receiver,
    ReceiverSettings,
    RecordingSink,
    TransmitterSettings,
    create_app,
)
from tests.receiver._support import (
    AUDIENCE,
    CLIENT_ID,
    OP,
    PUSH_TOKEN,
    TRANSMITTER,
    FakeClock,
    HttpResponse,
    Transmitter,
)

LIFETIME = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def transmitter(clock: FakeClock) -> Transmitter:
    return Transmitter(clock)


@pytest.fixture
def settings(tmp_path: Path) -> ReceiverSettings:
    return ReceiverSettings(
        transmitter=TransmitterSettings(
            issuer=TRANSMITTER,
            audience=(AUDIENCE,),
            push_tokens=(PUSH_TOKEN,),
            receiver_token="receiver-token",
            stream_id="stream-1",
        ),
        poll=PollSettings(url="https://tx.example.com/ssf/poll", max_events=10),
        logout=LogoutSettings(issuer=OP, audience=(CLIENT_ID,)),
        dedupe_path=tmp_path / "dedupe.sqlite3",
    )


@pytest.fixture
def sink() -> RecordingSink:
    return RecordingSink()


@pytest.fixture
def receiver(
    settings: ReceiverSettings, sink: RecordingSink, transmitter: Transmitter, clock: FakeClock
) -> Iterator[Receiver]:
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
        yield receiver


@pytest.fixture
def client(receiver: Receiver) -> Iterator[TestClient]:
    with TestClient(create_app(receiver)) as client:
        yield client


class Push:
    """POSTs a SET the way an RFC 8935 transmitter does."""

    def __init__(self, client: TestClient) -> None:
        self.client = client

    def __call__(
        self,
        token: str,
        *,
        bearer: str | None = PUSH_TOKEN,
        content_type: str = "application/secevent+jwt",
    ) -> HttpResponse:
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        return self.client.post("/ssf/events", content=token, headers=headers)


@pytest.fixture
def push(client: TestClient) -> Push:
    return Push(client)
