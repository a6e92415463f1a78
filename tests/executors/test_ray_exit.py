"""The exit does not wait on Ray's slow shutdown, and leaves none of Ray's processes behind.

A run that started its own local Ray ends that Ray's processes together (raylet first, then
the rest) instead of one by one (`e5ray.executors.ray_exit`); every process the run started,
found by a tag in its environment whoever its parent is by then, is gone when the run's
process has exited.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from corpus_utils import write_corpus
from proc_utils import TAG, end_run, started_by

from e5ray.executors.ray_exit import alive, descendants

REPO = Path(__file__).resolve().parents[2]


def test_descendants_and_alive_follow_processes_by_pid_and_start_time():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        found = [p for p in descendants() if p[0] == child.pid]
        assert len(found) == 1 and alive(found) == found
        assert alive([(child.pid, "0")]) == []  # the same pid with another start time: someone else
    finally:
        child.kill()
        child.wait()
    assert alive(found) == []


def test_every_process_of_the_local_ray_a_run_started_is_gone_when_the_run_exits(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=2, rows=10)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    tag = f"exit-{os.getpid()}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "e5ray.cli", "embed", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}"]
    command += ["--model=tiny", f"--model-path={bert_model_dir}", "--executor=ray", "--json", "--progress=off"]
    try:
        done = subprocess.run(
            command,
            env={**env, "HOME": tempfile.mkdtemp(prefix="home"), "PYTHONPATH": str(REPO), TAG: tag},
            capture_output=True,
            text=True,
            timeout=300,
        )
        left = started_by(tag)  # at once: the run's exit waited for them, nothing is waited for here
    finally:
        end_run(tag)
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"executor": "ray"' in done.stdout
    assert left == [], f"processes of the finished run still alive: {left}"
