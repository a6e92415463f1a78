"""Resume after SIGKILL: the refresh entrypoint as a real subprocess, killed at several points.

After every kill the previous manifest is still the published one, readable and sound;
the next run reuses every shard whose completion marker checks out, redoes the rest, and
ends with what an uninterrupted run gives. Leftover temporary files are for gc.

Runs are made slow enough to kill midway with shards of a few thousand rows embedded
256 rows at a time (~0.5 s per shard with the tiny model on 2 CPUs); the test polls
the output for completion markers and kills at the moment it wants.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard
from proc_utils import TAG, end_run, started_by

from e5ray.config import JobConfig
from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

REPO = Path(__file__).resolve().parents[2]
ROWS = 3000
CHUNK_ROWS = 256


def write_big_shards(inp: Path, count: int) -> None:
    for s in range(count):
        ids = list(range(1_000_000 * (s + 1), 1_000_000 * (s + 1) + ROWS))
        write_shard(inp / f"big-{s:02d}.parquet", ids, make_texts(ROWS, seed=300 + s))


@pytest.fixture
def refreshed_corpus(tmp_path, bert_model_dir):
    """Factory: an output at v1, and a corpus since changed (one shard kept, one deleted,
    `count` big ones added); also a reference output that the same refresh ran on
    uninterrupted, in process. Returns (input, output, reference manifest)."""

    def make(count: int) -> tuple[Path, Path, dict[str, Any]]:
        inp, out, ref = tmp_path / "in", tmp_path / "out", tmp_path / "reference"
        write_shard(inp / "keep.parquet", [1, 2, 3], ["one", "two", "three"])
        write_shard(inp / "gone.jsonl", [4, 5], ["four", "five"])
        embed_job(
            JobConfig.from_options(
                input=str(inp),
                output=str(out),
                model="tiny",
                model_path=str(bert_model_dir),
                executor="local",
                chunk_rows=CHUNK_ROWS,
            )
        )
        shutil.copytree(out, ref)
        (inp / "gone.jsonl").unlink()
        write_big_shards(inp, count)
        reference = embed_job(
            JobConfig.from_options(
                input=str(inp),
                output=str(ref),
                model="tiny",
                model_path=str(bert_model_dir),
                executor="local",
                chunk_rows=CHUNK_ROWS,
            )
        )
        assert reference["changes"]["counts"] == {"added": count, "changed": 0, "removed": 1, "unchanged": 1}
        return inp, out, reference

    return make


def job_command(inp: Path, out: Path, model_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO / "jobs" / "refresh_corpus.py"),
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        "tiny",
        "--model-path",
        str(model_dir),
        "--chunk-rows",
        str(CHUNK_ROWS),
        *extra,
    ]


class Run:
    """The refresh entrypoint in a subprocess (own session, tagged environment), logging to a file."""

    def __init__(self, command: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self.fh = open(log, "ab")
        self.tag = uuid.uuid4().hex
        self.proc = subprocess.Popen(
            command,
            cwd=REPO,
            env={**env, TAG: self.tag},
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.lingering: list[int] = []  # what outlived the driver's SIGKILL, before cleanup

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def kill(self) -> None:
        """SIGKILL the driver, then whatever it had started."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        time.sleep(0.5)
        self.lingering = started_by(self.tag)
        self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        end_run(self.tag)
        self.fh.close()


def shard_files(out: Path) -> list[str]:
    """Data files and completion markers (markers/ holds the markers), relative to the output."""
    return [f"{d}/{name}" for d in ("shards", "markers") if (out / d).exists() for name in os.listdir(out / d)]


def published_version(out: Path) -> int:
    return json.loads((out / "manifest.json").read_bytes())["version"]


def run_until_killed(
    run: Run, out: Path, old_markers: set[str], kill_when: Callable[[list[str], set[str]], bool], timeout: float = 240.0
) -> set[str]:
    """Poll the output; SIGKILL the driver when `kill_when(files, new_markers)` holds.
    Meanwhile readers must always find the previous version published."""
    deadline = time.monotonic() + timeout
    try:
        while True:
            files = shard_files(out)
            new = {f for f in files if f.endswith(".done.json")} - old_markers
            if kill_when(files, new):
                break
            assert run.proc.poll() is None, f"the run ended before the kill point:\n{run.tail()}"
            assert time.monotonic() < deadline, f"kill point not reached in {timeout}s:\n{run.tail()}"
            assert published_version(out) == 1
            time.sleep(0.005)
    finally:
        run.kill()
    assert published_version(out) == 1
    assert verify_output(OutputDir(str(out))) == []
    return {f for f in shard_files(out) if f.endswith(".done.json")} - old_markers


def finish(run: Run, timeout: float = 300.0) -> None:
    assert run.wait(timeout) == 0, run.tail()


def assert_same_as_reference(out: Path, reference: dict[str, Any], ref_dir: Path) -> dict[str, Any]:
    manifest = json.loads((out / "manifest.json").read_bytes())
    assert manifest["version"] == 2 and manifest["previous"] == "manifests/v000001.json"
    assert manifest["changes"] == reference["changes"]
    keys = ("shards", "input_rows", "embedded", "rejected", "truncated", "tokens")
    assert {k: manifest["totals"][k] for k in keys} == {k: reference["totals"][k] for k in keys}
    got, want = read_output(str(out)), read_output(str(ref_dir))  # read_output fails on a duplicate id
    assert sorted(got) == sorted(want)
    ids = sorted(want)
    np.testing.assert_allclose(np.stack([got[i] for i in ids]), np.stack([want[i] for i in ids]), atol=1e-6)
    assert verify_output(OutputDir(str(out))) == []
    return manifest


def test_kill_local_driver_at_several_points_then_resume(refreshed_corpus, bert_model_dir, tmp_path):
    count = 8
    inp, out, reference = refreshed_corpus(count)
    old_markers = {f for f in shard_files(out) if f.endswith(".done.json")}
    command = job_command(inp, out, bert_model_dir, "--executor", "local")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "runs.log"

    # 1. while the first shard is being written: nothing complete yet, a partial file on disk
    def writing_first(files: list[str], new: set[str]) -> bool:
        return any(f.endswith(".parquet.tmp") for f in files)

    done = run_until_killed(Run(command, env, log), out, old_markers, writing_first)
    assert len(done) < count
    partial = [f for f in shard_files(out) if f.endswith(".tmp")]
    assert partial  # the killed run left its partial file; no manifest names it
    assert not any(f in json.dumps(json.loads((out / "manifest.json").read_bytes())) for f in partial)

    # 2. after one shard completed, 3. after most: each rerun reuses what the last one finished
    for threshold in (1, count - 2):
        done = run_until_killed(Run(command, env, log), out, old_markers, lambda files, new, t=threshold: len(new) >= t)
        assert threshold <= len(done) < count

    # 4. run to the end
    finish(Run(command, env, log))
    manifest = assert_same_as_reference(out, reference, tmp_path / "reference")
    run = manifest["run"]
    assert run["reused_shards"] == len(done) > 0
    assert run["embedded_shards"] == count - len(done)
    assert run["carried_shards"] == 1

    # gc removes the killed runs' leftovers and nothing that v1 or v2 needs
    leftovers = {f for f in shard_files(out) if ".tmp" in f}
    assert leftovers
    deleted = collect_garbage(OutputDir(str(out)), keep=2, min_age_s=0)
    assert leftovers <= set(deleted)
    v1 = json.loads((out / "manifests/v000001.json").read_bytes())
    assert {f["path"] for e in v1["shards"] + manifest["shards"] for f in e["files"]}.isdisjoint(deleted)
    assert not [f for f in shard_files(out) if ".tmp" in f]
    assert verify_output(OutputDir(str(out))) == []
    assert verify_output(OutputDir(str(out)), manifest_path="manifests/v000001.json") == []
    # keep=1 then drops v1's deleted shard (gone.jsonl) and nothing else
    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    gone = sorted(d.split("-")[0] for d in deleted if d.startswith(("shards/", "markers/", "ids/")))
    assert gone == ["ids/gone.jsonl", "markers/gone.jsonl", "shards/gone.jsonl"]  # its data, ids and marker files
    assert verify_output(OutputDir(str(out))) == []


@pytest.fixture
def ray_env():
    """Environment for a driver that starts its own local Ray, isolated from any other Ray
    on this machine (own temp dir, so no `ray_current_cluster` of another session is
    joined) and bound to loopback; the temp dir is removed after."""
    pytest.importorskip("ray")
    # Short: Ray's unix sockets live below it and socket paths are limited to ~107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="e5r", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(
        {
            "PYTHONPATH": str(REPO),
            "RAY_TMPDIR": temp_dir,
            "RAY_USAGE_STATS_ENABLED": "0",
            # Makes Ray take 127.0.0.1 as this node's address (its single-machine mode).
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        }
    )
    yield env
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_kill_ray_driver_then_resume(refreshed_corpus, bert_model_dir, tmp_path, ray_env):
    """SIGKILL of a driver that started its own local Ray. The Ray processes it started
    (dashboard and runtime-env agents outlive it) are ended through its process group;
    an actor may still finish the shard it had in hand, which is fine: complete or absent."""
    count = 6
    inp, out, reference = refreshed_corpus(count)
    old_markers = {f for f in shard_files(out) if f.endswith(".done.json")}
    command = job_command(inp, out, bert_model_dir, "--executor", "ray")  # Ray, whatever the plan size
    log = tmp_path / "ray-runs.log"
    run = Run(command, ray_env, log)
    done = run_until_killed(run, out, old_markers, lambda files, new: len(new) >= 1, timeout=300)
    # Ray's processes do not all die with the driver (at least the dashboard and runtime-env
    # agents are left running); end_run killed them. Nothing of the run may be left now.
    print(f"processes alive 0.5 s after the driver's SIGKILL: {len(run.lingering)}")
    assert started_by(run.tag) == []
    assert 1 <= len(done) < count

    run = Run(command, ray_env, log)
    finish(run)
    assert started_by(run.tag) == []
    manifest = assert_same_as_reference(out, reference, tmp_path / "reference")
    assert manifest["run"]["executor"] == "ray"
    assert manifest["run"]["reused_shards"] == len(done)
    assert manifest["run"]["embedded_shards"] == count - len(done)
    collect_garbage(OutputDir(str(out)), keep=2, min_age_s=0)
    assert not [f for f in shard_files(out) if ".tmp" in f]
    assert verify_output(OutputDir(str(out))) == []
