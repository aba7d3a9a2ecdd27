"""RFC 8936 poll delivery against the in-test transmitter (httpx.MockTransport)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from email.utils import format_datetime

import httpx
import pytest

from receiver import Poller, PollSettings, Receiver, RecordingSink
from tests.receiver._support import RISC, START, FakeClock, Transmitter

USER = {"format": "opaque", "id": "user-1"}
POLL_URL = "https://tx.example.com/ssf/poll"


@pytest.fixture
def poller(receiver: Receiver, transmitter: Transmitter, clock: FakeClock) -> Iterator[Poller]:
    with transmitter.client() as http:
        yield Poller(
            receiver=receiver,
            settings=PollSettings(url=POLL_URL, max_events=10, return_immediately=True),
            client=http,
            token="receiver-token",
            jitter=lambda: 1.0,
            clock=clock,
        )


def _queue(transmitter: Transmitter, jti: str, event: str = f"{RISC}account-disabled") -> str:
    token = transmitter.set(event, {}, sub_id=USER, jti=jti)
    transmitter.queue[jti] = token
    return token


def test_polled_sets_are_published_then_acknowledged_in_the_next_request(
    poller: Poller, transmitter: Transmitter, sink: RecordingSink
) -> None:
    _queue(transmitter, "a")
    _queue(transmitter, "b")

    first_delay = poller.poll_once()
    published_before_ack = len(sink.events)
    poller.poll_once()

    assert first_delay == 0.0  # acks are owed: ask again at once
    assert published_before_ack == 2
    assert "ack" not in transmitter.poll_requests[0]
    assert sorted(transmitter.poll_requests[1]["ack"]) == ["a", "b"]
    assert transmitter.queue == {}
    assert poller.pending_acks == ()


def test_request_carries_max_events_and_return_immediately(
    poller: Poller, transmitter: Transmitter
) -> None:
    poller.poll_once()

    assert transmitter.poll_requests[0] == {"maxEvents": 10, "returnImmediately": True}


def test_set_not_published_is_not_acknowledged_and_is_published_on_redelivery(
    poller: Poller, transmitter: Transmitter, sink: RecordingSink
) -> None:
    _queue(transmitter, "a")
    sink.fail_with = OSError("kafka down")

    delay = poller.poll_once()
    sink.fail_with = None
    poller.poll_once()  # the transmitter redelivers the unacknowledged SET
    poller.poll_once()

    assert delay == 1.0  # backed off
    assert "ack" not in transmitter.poll_requests[1]
    assert transmitter.poll_requests[2]["ack"] == ["a"]
    assert len(sink.events) == 1


def test_redelivered_set_already_published_is_acknowledged_without_publishing_again(
    poller: Poller, transmitter: Transmitter, sink: RecordingSink, receiver: Receiver
) -> None:
    token = _queue(transmitter, "a")
    receiver.receive_set(token)  # e.g. also pushed earlier

    poller.poll_once()
    poller.poll_once()

    assert transmitter.poll_requests[1]["ack"] == ["a"]
    assert len(sink.events) == 1


def test_bad_set_is_reported_in_set_errs_with_its_error_code(
    poller: Poller, transmitter: Transmitter, sink: RecordingSink
) -> None:
    transmitter.queue["bad"] = transmitter.set(f"{RISC}account-disabled", aud="https://other")
    transmitter.queue["junk"] = "not-a-jwt"

    poller.poll_once()
    poller.poll_once()

    errs = transmitter.poll_requests[1]["setErrs"]
    assert errs["bad"]["err"] == "invalid_audience"
    assert errs["junk"]["err"] == "invalid_request"
    assert all(e["description"] for e in errs.values())
    assert sink.events == []
    assert transmitter.queue == {}


def test_polled_set_with_more_aliases_than_the_bound_is_an_error_and_the_batch_goes_on(
    poller: Poller, transmitter: Transmitter, sink: RecordingSink
) -> None:
    ids = [{"format": "opaque", "id": f"u{i}"} for i in range(33)]
    flood = {"format": "aliases", "identifiers": ids}
    transmitter.queue["flood"] = transmitter.set(f"{RISC}account-disabled", {}, sub_id=flood)
    _queue(transmitter, "fine")

    poller.poll_once()
    poller.poll_once()

    assert transmitter.poll_requests[1]["setErrs"]["flood"]["err"] == "invalid_request"
    assert transmitter.poll_requests[1]["ack"] == ["fine"]
    assert [e.subject() for e in sink.events] == ["user-1"]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(
    status: int, poller: Poller, transmitter: Transmitter
) -> None:
    transmitter.poll_answers.append(httpx.Response(status, headers={"Retry-After": "42"}))

    assert poller.poll_once() == 42.0


def test_retry_after_http_date_is_honoured(
    poller: Poller, transmitter: Transmitter, clock: FakeClock
) -> None:
    when = format_datetime(START.replace(minute=2), usegmt=True)
    transmitter.poll_answers.append(httpx.Response(503, headers={"Retry-After": when}))

    assert poller.poll_once() == 120.0


def test_unavailable_without_retry_after_backs_off_exponentially_to_the_cap(
    receiver: Receiver, transmitter: Transmitter
) -> None:
    with transmitter.client() as http:
        poller = Poller(
            receiver=receiver,
            settings=PollSettings(url=POLL_URL, max_backoff=10.0),
            client=http,
            token="receiver-token",
            jitter=lambda: 1.0,
        )
        transmitter.poll_answers.extend(httpx.Response(503) for _ in range(6))
        delays = [poller.poll_once() for _ in range(6)]
        recovered = poller.poll_once()

    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert recovered == 0.0  # long polling: ask again at once


def test_acks_survive_a_failed_poll_and_are_sent_with_the_next_one(
    poller: Poller, transmitter: Transmitter
) -> None:
    _queue(transmitter, "a")
    poller.poll_once()
    transmitter.poll_answers.append(httpx.Response(503))

    poller.poll_once()
    poller.poll_once()

    assert transmitter.poll_requests[1]["ack"] == ["a"]
    assert transmitter.poll_requests[2]["ack"] == ["a"]
    assert poller.pending_acks == ()


def test_more_available_polls_again_without_waiting(
    receiver: Receiver, transmitter: Transmitter, sink: RecordingSink
) -> None:
    for i in range(3):
        _queue(transmitter, f"s{i}")
    with transmitter.client() as http:
        poller = Poller(
            receiver=receiver,
            settings=PollSettings(url=POLL_URL, max_events=1, return_immediately=True),
            client=http,
            token="receiver-token",
        )
        delays = [poller.poll_once() for _ in range(3)]
        idle = poller.poll_once()  # acknowledges the last SET, finds the queue empty

    assert delays == [0.0, 0.0, 0.0]
    assert idle == 5.0
    assert len(sink.events) == 3


def test_network_error_backs_off(poller: Poller, transmitter: Transmitter) -> None:
    transmitter.down = True

    assert poller.poll_once() == 1.0
    assert poller.last_error is not None


def test_poller_thread_sends_owed_acks_when_closed_during_a_backoff(
    receiver: Receiver, transmitter: Transmitter, sink: RecordingSink
) -> None:
    _queue(transmitter, "a")
    transmitter.poll_answers.extend([None, httpx.Response(503, headers={"Retry-After": "600"})])
    with transmitter.client() as http:
        poller = Poller(
            receiver=receiver,
            settings=PollSettings(url=POLL_URL),
            client=http,
            token="receiver-token",
        )
        with poller:
            transmitter.wait_for_polls(2)  # published "a", then told to wait 600 s

    final = transmitter.poll_requests[-1]
    assert len(transmitter.poll_requests) == 3
    assert final == {"maxEvents": 0, "returnImmediately": True, "ack": ["a"]}
    assert len(sink.events) == 1


def test_unexpected_error_on_one_set_does_not_hold_back_the_rest_of_its_batch(
    poller: Poller,
    receiver: Receiver,
    transmitter: Transmitter,
    sink: RecordingSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    poison = _queue(transmitter, "poison")
    _queue(transmitter, "good")
    real = receiver.receive_set

    def receive_set(token: str) -> object:
        if token == poison:
            raise RuntimeError("a bug the receiver did not foresee")
        return real(token)

    monkeypatch.setattr(receiver, "receive_set", receive_set)

    delay = poller.poll_once()
    poller.poll_once()

    assert delay > 0  # backed off: the poisoned SET will be redelivered
    assert len(sink.events) == 1
    assert transmitter.poll_requests[1]["ack"] == ["good"]
    assert "setErrs" not in transmitter.poll_requests[1]
    assert list(transmitter.queue) == ["poison"]


def test_retry_after_that_is_not_a_number_falls_back_to_backoff(
    poller: Poller, transmitter: Transmitter
) -> None:
    # str.isdigit() accepts superscripts, which float() refuses.
    transmitter.poll_answers.append(
        httpx.Response(503, headers={b"Retry-After": "\u00b2".encode()})
    )

    assert poller.poll_once() == 1.0


def test_owed_acks_that_cannot_be_sent_at_close_are_logged_not_raised_in_the_thread(
    receiver: Receiver,
    transmitter: Transmitter,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # E.g. the HTTP client was closed under the thread: the transmitter redelivers the SETs.
    escaped: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", escaped.append)
    _queue(transmitter, "a")
    transmitter.poll_answers.extend([None, httpx.Response(503, headers={"Retry-After": "600"})])

    class ClosedAtTheEnd(Poller):
        def poll_once(self, *, max_events: int | None = None) -> float:
            if max_events == 0:
                raise RuntimeError("Cannot send a request, as the client has been closed.")
            return super().poll_once(max_events=max_events)

    with transmitter.client() as http:
        poller = ClosedAtTheEnd(
            receiver=receiver,
            settings=PollSettings(url=POLL_URL),
            client=http,
            token="receiver-token",
        )
        with caplog.at_level(logging.WARNING, logger="receiver"), poller:
            transmitter.wait_for_polls(2)

    assert escaped == []
    assert "acknowledgements" in caplog.text
