"""A Ray cluster that stops answering mid-run ends the run in bounded time, and the next run resumes.

Real Ray, no mocks: a `ray start --head` on loopback (tests/ray_head.py, its own temp dir and
HOME, its processes ended by pid), `e5ray embed --executor ray` joining it as a subprocess,
and a short watchdog bound ($E5RAY_RAY_LOST_TIMEOUT=8). Two ways to lose the cluster:

- the head's GCS frozen (SIGSTOP: connections stay open, nothing answers) once the first
  unit has a marker; thawed (SIGCONT) afterwards;
- the only worker node that can host the pool (the head has 0 CPUs) killed once the
  first unit has a marker: Ray marks it dead after its health checks, then no live node
  can host an actor.

Each must end with exit code 7 and one `e5ray: error:` line naming the address, within the
bound (plus Ray's own node-death detection for the second); nothing is committed; the next
run commits every id exactly once. A head that freezes once the command's work is done must
not hold the exit either (Ray's disconnect waits on it for good): the command's own exit
code, one warning line, within the bound.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from corpus_utils import write_corpus
from proc_utils import TAG, end_run, started_by
from ray_head import RAY, Head, ray_head

from e5ray.errors import EXIT_CLUSTER_LOST

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
LOST_S = 8.0  # the watchdog's bound in these tests
SHARDS, ROWS = 24, 150


def driver(tmp_path: Path, model_dir: Path, head: Head, *flags: str) -> subprocess.Popen[str]:
    """`e5ray embed --executor ray` joining `head`, as a subprocess whose processes carry a tag of their own."""
    command = [sys.executable, "-m", "e5ray.cli", "embed", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}"]
    command += ["--model=tiny", f"--model-path={model_dir}", "--progress=off", "--executor=ray", *flags]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    tag = f"driver-{time.monotonic_ns()}"
    env |= {
        "PYTHONPATH": str(REPO),
        "E5RAY_RAY_LOST_TIMEOUT": str(LOST_S),
        "E5RAY_RAY_NO_NODE_TIMEOUT": str(LOST_S),
        TAG: tag,
    }
    env |= {"RAY_ADDRESS": head.gcs, "RAY_AUTH_TOKEN": head.token, "HOME": head.env["HOME"]}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    TAGS[proc.pid] = tag
    return proc


TAGS: dict[int, str] = {}  # driver pid -> the tag its processes carry


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str]:
    """Wait for the driver (killed after `timeout`: then its code is -9); then end, by pid,
    whatever it started and left behind."""
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
    finally:
        end_run(TAGS.pop(proc.pid))
    return proc.returncode, stderr


def first_marker(out: Path, proc: subprocess.Popen[str], timeout: float = 120) -> None:
    """Wait until a unit of the run has its completion marker (the pool is up and working)."""
    deadline = time.monotonic() + timeout
    while not any(p.is_file() for p in (out / "markers").rglob("*")):
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no unit finished"
        time.sleep(0.05)


def pids_of(tag: str, name: str) -> list[int]:
    """The processes tagged `tag` whose command line names `name` (the head's gcs_server)."""
    return [pid for pid in started_by(tag) if name.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()]


def committed_ids(out: Path) -> list[int]:
    ids: list[int] = []
    for file in sorted((out / "shards").rglob("*.parquet")) if (out / "manifest.json").exists() else []:
        ids += pq.read_table(file, columns=["id"]).column("id").to_pylist()
    return ids


def assert_one_line(code: int, stderr: str, address: str, words: str) -> str:
    assert code == EXIT_CLUSTER_LOST, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if line.startswith("e5ray: error:")]
    assert len(lines) == 1, stderr[-3000:]
    assert address in lines[0] and words in lines[0] and "Traceback" not in stderr, lines[0]
    return lines[0]


@contextmanager
def worker_node(head: Head, num_cpus: int) -> Iterator[str]:
    """A second node joined to `head`, whose processes carry a tag of their own (ended by pid)."""
    tag = f"worker-{time.monotonic_ns()}"
    env = {**head.env, TAG: tag}
    start = [RAY, "start", f"--address={head.gcs}", "--node-ip-address=127.0.0.1", f"--num-cpus={num_cpus}"]
    started = subprocess.run([*start, "--disable-usage-stats"], env=env, capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield tag
    finally:
        end_run(tag)


@pytest.mark.timeout(240)
def test_a_frozen_head_ends_the_run_within_the_bound_and_the_next_run_resumes(bert_model_dir, tmp_path):
    expected = sorted(write_corpus(tmp_path / "in", shards=SHARDS, rows=ROWS))
    with ray_head(num_cpus=2) as head:
        (gcs,) = pids_of(head.env[TAG], "gcs_server")
        proc, frozen = driver(tmp_path, bert_model_dir, head), time.monotonic()
        try:
            first_marker(tmp_path / "out", proc)
            os.kill(gcs, signal.SIGSTOP)
            frozen = time.monotonic()
        finally:
            code, stderr = finish(proc, LOST_S * 4 + 30)
            elapsed = time.monotonic() - frozen
            os.kill(gcs, signal.SIGCONT)
        line = assert_one_line(code, stderr, head.gcs, "its head (GCS)")
        print(f"frozen GCS: exit {code} {elapsed:.1f} s after the freeze (bound {LOST_S:g} s): {line}")
        assert elapsed <= LOST_S + 3 + 5, elapsed  # the bound, a probe period, the exit
        assert not (tmp_path / "out" / "manifest.json").exists()  # nothing was committed

        code, stderr = finish(driver(tmp_path, bert_model_dir, head), 180)  # thawed: the same cluster
    assert code == 0, stderr[-3000:]
    assert sorted(committed_ids(tmp_path / "out")) == expected


@pytest.mark.timeout(360)
def test_a_pool_no_live_node_can_host_ends_the_run_within_the_bound_whether_none_joined_or_all_were_lost(
    bert_model_dir, tmp_path
):
    """One head of 0 CPUs (one start of Ray for both cases): first no node ever joins, then the
    only worker node is killed mid-run; a new worker node then lets the next run commit."""
    never, lost_dir = tmp_path / "never", tmp_path / "lost"
    write_corpus(never / "in", shards=2, rows=10)
    expected = sorted(write_corpus(lost_dir / "in", shards=SHARDS, rows=ROWS))
    with ray_head(num_cpus=0) as head:
        # --max-actors: the pool is asked for, and waits for a node forever
        started = time.monotonic()
        code, stderr = finish(driver(never, bert_model_dir, head, "--max-actors=1", "--threads-per-actor=1"), 120)
        elapsed = time.monotonic() - started
        line = assert_one_line(code, stderr, head.gcs, "no live node can host an actor of the pool")
        print(f"no node can host: exit {code} {elapsed:.1f} s after the start (bound {LOST_S:g} s): {line}")
        assert elapsed <= 30 + LOST_S + 3 + 5, elapsed  # start-up and planning, the bound, a probe period, the exit
        assert not (never / "out" / "manifest.json").exists()

        with worker_node(head, num_cpus=2) as worker:
            proc, lost = driver(lost_dir, bert_model_dir, head), time.monotonic()
            try:
                first_marker(lost_dir / "out", proc)
                for pid in started_by(worker):
                    os.kill(pid, signal.SIGKILL)
                lost = time.monotonic()
            finally:
                code, stderr = finish(proc, LOST_S * 4 + 60)
        elapsed = time.monotonic() - lost
        line = assert_one_line(code, stderr, head.gcs, "")  # Ray Data's error, or the watchdog's
        print(f"lost worker: exit {code} {elapsed:.1f} s after the kill (bound {LOST_S:g} s): {line}")
        # Ray's node-death detection (5 failed health checks, 3 s apart), the bound, a probe period, the exit.
        assert elapsed <= 15 + 3 + LOST_S + 3 + 5, elapsed
        assert not (lost_dir / "out" / "manifest.json").exists()

        with worker_node(head, num_cpus=2):
            code, stderr = finish(driver(lost_dir, bert_model_dir, head), 180)
    assert code == 0, stderr[-3000:]
    assert sorted(committed_ids(lost_dir / "out")) == expected


LEAVER = """
import argparse, sys
from e5ray.cli.errors import main_with_errors
from e5ray.executors.ray_start import ensure_ray
import ray

ensure_ray()
print(ray.get(ray.remote(lambda: "READY").remote()), flush=True)
sys.stdin.readline()  # the test freezes the head, then says go
sys.exit(main_with_errors(lambda args: 4, argparse.Namespace()))
"""


@pytest.mark.timeout(120)
def test_a_head_frozen_after_the_work_is_done_does_not_hold_the_exit(tmp_path):
    with ray_head(num_cpus=1) as head:
        (gcs,) = pids_of(head.env[TAG], "gcs_server")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        tag = f"leaver-{time.monotonic_ns()}"
        env |= {"RAY_ADDRESS": head.gcs, "RAY_AUTH_TOKEN": head.token, "HOME": head.env["HOME"], TAG: tag}
        env |= {
            "PYTHONPATH": str(REPO),
            "E5RAY_RAY_LOST_TIMEOUT": str(LOST_S),
            "E5RAY_RAY_NO_NODE_TIMEOUT": str(LOST_S),
        }
        proc = subprocess.Popen(
            [sys.executable, "-c", LEAVER],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        TAGS[proc.pid] = tag
        frozen = time.monotonic()
        try:
            assert proc.stdout is not None and proc.stdin is not None
            assert proc.stdout.readline().strip() == "READY", proc.stderr.read() if proc.stderr else ""
            os.kill(gcs, signal.SIGSTOP)
            frozen = time.monotonic()
            proc.stdin.write("go\n")
            proc.stdin.flush()
        finally:
            code, stderr = finish(proc, LOST_S * 4 + 20)
            elapsed = time.monotonic() - frozen
            os.kill(gcs, signal.SIGCONT)
    print(f"frozen after the work: exit {code} {elapsed:.1f} s after the freeze (bound {LOST_S:g} s)")
    assert code == 4, stderr[-3000:]  # the command's own code, not Ray's
    lines = [line for line in stderr.splitlines() if line.startswith("e5ray:")]
    assert len(lines) == 1 and "did not answer the disconnect" in lines[0] and head.gcs in lines[0], stderr[-3000:]
    assert elapsed <= LOST_S + 5, elapsed
