"""RFC 8936 poll delivery: one named daemon thread asks the transmitter for SETs, publishes
each through the :class:`~receiver.Receiver`, and acknowledges a SET by ``jti`` only in the
request after it was published. Bad SETs are reported in ``setErrs``; SETs that failed for a
transient reason are neither acknowledged nor reported, so the transmitter sends them again.

``poll_once`` is the whole protocol step and returns how long to wait before the next one,
so tests drive it without threads or sleeping.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any

import httpx

from receiver._errors import DeliveryUnavailable, SetRejected
from receiver._receiver import Receiver
from receiver._settings import PollSettings

__all__ = ["Poller"]

log = logging.getLogger("receiver.poller")

_MAX_RETRY_AFTER = 3600.0


class Poller:
    """Polls one transmitter. ``token`` is the bearer token presented to it.

    ``sleep`` waits between requests (default: an interruptible wait that :meth:`close`
    cuts short); ``jitter`` returns a factor in [0, 1] that spreads backoffs.
    """

    def __init__(
        self,
        *,
        receiver: Receiver,
        settings: PollSettings,
        client: httpx.Client,
        token: str | None = None,
        sleep: Callable[[float], object] | None = None,
        jitter: Callable[[], float] = random.random,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._receiver = receiver
        self._settings = settings
        self._client = client
        self._headers = {"Accept": "application/json"}
        if token is not None:
            self._headers["Authorization"] = f"Bearer {token}"
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._jitter = jitter
        self._clock = clock
        self._acks: list[str] = []
        self._errs: dict[str, dict[str, str]] = {}
        self._failures = 0
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    @property
    def pending_acks(self) -> tuple[str, ...]:
        return tuple(self._acks)

    @property
    def pending_errors(self) -> dict[str, dict[str, str]]:
        return dict(self._errs)

    def poll_once(self, *, max_events: int | None = None) -> float:
        """Send pending acks/errors, request SETs, process them; return the seconds to wait."""
        wanted = self._settings.max_events if max_events is None else max_events
        body: dict[str, Any] = {
            "maxEvents": wanted,
            "returnImmediately": self._settings.return_immediately or wanted == 0,
        }
        acks, errs = list(self._acks), dict(self._errs)
        if acks:
            body["ack"] = acks
        if errs:
            body["setErrs"] = errs
        try:
            response = self._client.post(self._settings.url, json=body, headers=self._headers)
        except httpx.HTTPError as exc:
            return self._backoff(f"poll request failed: {type(exc).__name__}")
        if response.status_code in (429, 503):
            retry_after = self._retry_after(response.headers.get("retry-after"))
            fallback = self._backoff(f"transmitter answered {response.status_code}")
            return fallback if retry_after is None else retry_after
        if response.status_code != 200:
            return self._backoff(f"transmitter answered {response.status_code}")
        try:
            document = response.json()
            sets = document.get("sets", {})
            if not isinstance(sets, dict):
                raise TypeError("sets is not an object")
        except (ValueError, AttributeError, TypeError):
            return self._backoff("poll response is not an RFC 8936 object")
        # The 200 means the transmitter took our acks and errors.
        self._acks = [a for a in self._acks if a not in acks]
        self._errs = {j: e for j, e in self._errs.items() if j not in errs}
        transient = self._process(sets)
        if transient:
            return self._backoff("some SETs could not be published; they will be redelivered")
        self._failures = 0
        self.last_error = None
        if self._acks or self._errs or document.get("moreAvailable") is True:
            return 0.0
        return self._settings.interval if self._settings.return_immediately else 0.0

    def _process(self, sets: dict[str, Any]) -> bool:
        transient = False
        for jti, token in sets.items():
            if not isinstance(token, str):
                self._errs[jti] = {"err": "invalid_request", "description": "not a compact JWS"}
                continue
            try:
                receipt = self._receiver.receive_set(token)
            except SetRejected as exc:
                self._errs[jti] = {"err": exc.code, "description": exc.description}
            except DeliveryUnavailable as exc:
                log.warning("SET %r not published, will be redelivered: %s", jti, exc)
                transient = True
            except Exception:
                # Not known to be bad, so not reported; the other SETs of the batch go on
                # (raising here would hold every SET after this one back for as long as it
                # keeps failing).
                log.exception("SET %r failed unexpectedly, will be redelivered", jti)
                transient = True
            else:
                if receipt.jti != jti:
                    log.warning("SET listed as %r carries jti %r", jti, receipt.jti)
                self._acks.append(jti)
        return transient

    def _backoff(self, message: str) -> float:
        log.warning("%s", message)
        self.last_error = message
        self._failures += 1
        ceiling = min(self._settings.max_backoff, 2.0 ** min(self._failures - 1, 30))
        return ceiling * (0.5 + 0.5 * self._jitter())

    def _retry_after(self, value: str | None) -> float | None:
        if value is None:
            return None
        value = value.strip()
        if value.isascii() and value.isdigit():  # isdigit alone takes "²", which int() refuses
            return min(float(int(value)), _MAX_RETRY_AFTER)
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return min(max((when - self._clock()).total_seconds(), 0.0), _MAX_RETRY_AFTER)

    # -- thread ------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("poller already started")
        self._thread = threading.Thread(
            target=self._run, name="revocast-receiver-poll", daemon=True
        )
        self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop polling, then send the acknowledgements still owed."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                delay = self.poll_once()
            except Exception:  # the thread must survive anything one response can cause
                log.exception("poll step failed")
                delay = self._backoff("poll step failed")
            if delay > 0 and not self._stop.is_set():
                self._sleep(delay)
        if self._acks or self._errs:
            try:
                self.poll_once(max_events=0)
            except Exception:  # the HTTP client closed under us, say
                log.warning(
                    "could not send %d owed acknowledgements at close; the transmitter "
                    "will redeliver those SETs (already published: deduplicated)",
                    len(self._acks) + len(self._errs),
                    exc_info=True,
                )

    def __enter__(self) -> Poller:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
