"""A service process for the consumer-restart fault test.

python -m tests.faults._replay_worker BOOTSTRAP TOPIC die AFTER
    prints "mid <status> <applied>" once AFTER events are applied, then keeps replaying
    until it is killed.
python -m tests.faults._replay_worker BOOTSTRAP TOPIC snapshot PROBE_JTI
    prints one JSON line once ready: whether PROBE_JTI's token was refused as unavailable
    before readiness, how many records had been handled when it became ready, and
    ``repr(state.snapshot())`` (comparable across processes with the same PYTHONHASHSEED).
"""

from __future__ import annotations

import json
import sys
import threading

from consumer_sdk import DataSourceState, Revocast, SourceStatus, StateUnavailableError
from revocation_events import Event, KafkaSettings
from tests.consumer_sdk._helpers import settings, token


def handled(rc: Revocast) -> int:
    stats = rc.stats()
    return sum(sum(stats[kind].values()) for kind in ("applied", "unchanged", "skipped"))


def main(bootstrap: str, topic: str, mode: str, arg: str) -> int:
    kafka = KafkaSettings(bootstrap_servers=(bootstrap,), topic=topic)
    rc = Revocast(settings(kafka=kafka, replay_from_beginning=True))
    if mode == "die":
        after = int(arg)
        seen = 0

        def on_event(event: Event) -> None:
            nonlocal seen
            seen += 1
            if seen == after:
                print(f"mid {rc.status_provider.current.state.value} {seen}", flush=True)

        rc.add_revocation_listener(on_event)
        threading.Event().wait()  # until SIGKILL
        return 1
    at_ready: list[int] = []

    def on_status(status: SourceStatus) -> None:
        if status.state is DataSourceState.VALID and not at_ready:
            at_ready.append(handled(rc))

    rc.add_status_listener(on_status)
    probe = token(jti=arg, lifetime=3600)
    try:
        rc.verify(probe)
        refused_before_ready = False
    except StateUnavailableError:
        refused_before_ready = True
    ready = rc.wait_until_ready(120)
    report = {
        "ready": ready,
        "refused_before_ready": refused_before_ready,
        "handled_at_ready": at_ready[0] if at_ready else None,
        "snapshot": repr(rc.state.snapshot()),
        "entries": rc.stats()["entries"],
    }
    print(json.dumps(report), flush=True)
    rc.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
