"""A process killed between a state change's commit and its publication (SIGKILL, OOM kill,
deploy) must not leave the change in force with its revocation never published."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from identity_service import create_app
from tests.identity_service._crash_child import USERS, JsonRecorder, settings

ROOT = Path(__file__).resolve().parents[2]
"""The child runs from here, so it imports the code under test, not whatever is installed."""


def crash_while_publishing(db_path: Path) -> list[Any]:
    """Run the child until each state change is committed and inside the publisher, SIGKILL
    it, and return the publisher calls it had entered, in order."""
    with subprocess.Popen(
        [sys.executable, "-m", "tests.identity_service._crash_child", str(db_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        watchdog = threading.Timer(60, child.kill)  # a stuck child fails the test, not the run
        watchdog.start()
        calls: list[Any] = []
        try:
            assert child.stdout is not None
            for line in child.stdout:
                if line.strip() == "ready":
                    break
                calls.append(json.loads(line))
            else:
                raise AssertionError(f"the child exited early ({child.wait()}) after {calls}")
            os.kill(child.pid, signal.SIGKILL)
            assert child.wait() == -signal.SIGKILL
        finally:
            watchdog.cancel()
            child.kill()
    return calls


def test_revocations_committed_before_a_sigkill_are_published_exactly_at_restart(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "idp.sqlite3"
    interrupted = crash_while_publishing(db_path)
    assert [call[0] for call in interrupted] == [
        "revoke_session",
        "revoke_subject",
        "revoke_subject",
        "bump_subject_version",
        "block_subject",
        "revoke_session",
        "revoke_key",
    ]
    assert len(USERS) == 6

    restarted = JsonRecorder()
    create_app(settings(db_path), restarted)

    # The same calls, in commit order, with the same arguments: the watermark of the password
    # change and of logout-everywhere is the one read when it committed, not the restart time.
    assert restarted.calls == interrupted
    again = JsonRecorder()
    create_app(settings(db_path), again)
    assert again.calls == []
