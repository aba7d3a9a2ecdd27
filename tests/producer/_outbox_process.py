"""A publisher in a process of its own, for tests of processes sharing one outbox file.

Run as ``python -m tests.producer._outbox_process`` with the ``REVOCAST_*`` settings in the
environment, and drive it line by line on stdin. It answers each line with one line:

* (at start) ``ready`` once the publisher is open;
* ``publish TAG N``: N token revocations ``TAG-0``… one call each, in order; answers a JSON
  list of ``[event_id, queued, partition, offset]``;
* ``exit``: closes the publisher (releasing the drain lease) and answers ``closed``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime, timedelta

from producer import Publisher, PublisherSettings


def main() -> None:
    expires_at = datetime.now(UTC) + timedelta(hours=1)
    with Publisher(PublisherSettings.from_env()) as publisher:
        print("ready", flush=True)
        for line in sys.stdin:
            command, *args = line.split()
            if command == "exit":
                break
            if command != "publish":
                raise SystemExit(f"unknown command {line!r}")
            tag, count = args[0], int(args[1])
            results = [
                publisher.revoke_token(f"{tag}-{n}", expires_at=expires_at, sub=tag)
                for n in range(count)
            ]
            answer = [[str(r.event_id), r.queued, r.partition, r.offset] for r in results]
            print(json.dumps(answer), flush=True)
    print("closed", flush=True)


if __name__ == "__main__":
    main()
