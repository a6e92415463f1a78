"""Processes of one test run, found by a tag in their environment, and ended by pid.

`ray stop --force` would end every Ray process on the machine, other sessions' too.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

TAG = "E5RAY_TEST_RUN"


def started_by(tag: str) -> list[int]:
    """Live processes (zombies excluded) of one run: every process the driver started,
    and what those started, inherits the run's tag in its environment (Ray's workers put
    themselves in process groups of their own, so the process group is not enough)."""
    needle = f"{TAG}={tag}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z" and needle in Path(f"/proc/{entry}/environ").read_bytes().split(b"\0"):
                found.append(int(entry))
        except (OSError, IndexError):  # gone meanwhile, or not ours to read
            continue
    return found


def end_run(tag: str, timeout: float = 60.0) -> None:
    """SIGKILL, by pid, whatever the killed driver had started (a local Ray: GCS, raylet,
    agents, workers) and wait until it is gone."""
    deadline = time.monotonic() + timeout
    while True:
        members = started_by(tag)
        if not members:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of the killed run still alive: {members}")
        for pid in members:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.2)
