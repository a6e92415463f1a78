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


def test_abandoning_a_lost_local_ray_prints_one_line_kills_what_names_its_dir_and_exits_at_once(tmp_path):
    """`abandon` never asks Ray anything: a process naming the local Ray's temp dir (as a node's
    do) is SIGKILLed, the dir removed, the line printed and the exit code returned, with no atexit run."""
    temp_dir = tempfile.mkdtemp(prefix="e5ray-", dir="/tmp")
    tag = f"abandon-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(REPO), TAG: tag}
    script = (
        "import atexit, subprocess, sys\n"
        "from e5ray.executors.ray_exit import abandon\n"
        "node = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', sys.argv[1]])\n"
        "atexit.register(lambda: print('atexit ran', file=sys.stderr))\n"
        "abandon('e5ray: error: RayClusterLost: gone', 7, sys.argv[1])\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, temp_dir], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 7, done.stderr
        assert done.stderr == "e5ray: error: RayClusterLost: gone\n"
        assert not Path(temp_dir).exists()
        assert started_by(tag) == []  # the stand-in node process is gone
    finally:
        end_run(tag)
