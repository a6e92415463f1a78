"""Ctrl-C: one line, exit 130, no temporary files left, finished shards reused; gc removes
the temporary files of dead runs at once."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from corpus_utils import write_corpus
from proc_utils import TAG, end_run

from e5ray.output.gc import collect_garbage
from e5ray.store.filesystem import OutputDir
from e5ray.store.tempfiles import owner_tag, remove_dead_temp_files

REPO = Path(__file__).resolve().parents[2]


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or ".tmp-" in p.name)]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("executor", ["local", "ray"])
def test_ctrl_c_exits_130_says_what_is_reused_and_leaves_no_temp_files(executor, bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=8, rows=2500)
    out = tmp_path / "out"
    tag = f"interrupt-{os.getpid()}-{executor}"
    ray_tmp = tempfile.mkdtemp(prefix="ri", dir="/tmp")  # isolated, short (socket paths)
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_TMPDIR": ray_tmp, TAG: tag}
    env.pop("RAY_ADDRESS", None)
    command = [sys.executable, "-m", "e5ray.cli", "embed", f"--input={tmp_path / 'in'}", f"--output={out}"]
    command += ["--model=tiny", f"--model-path={bert_model_dir}", f"--executor={executor}", "--chunk-rows=256"]
    # A session of its own, signalled as a whole: what Ctrl-C in a terminal does.
    driver = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not list(out.rglob("*.done.json")):
            assert driver.poll() is None, driver.stderr.read() if driver.stderr else ""
            assert time.monotonic() < deadline, "no shard finished in time"
            time.sleep(0.05)
        os.killpg(driver.pid, signal.SIGINT)
        _, err = driver.communicate(timeout=120)
    finally:
        if driver.poll() is None:
            driver.kill()
        end_run(tag)
    assert driver.returncode == 130, err
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(r"e5ray: interrupted; (\d+) shards finished and will be reused: rerun the same command", last)
    assert match, err[-2000:]
    assert "Traceback" not in err
    finished = int(match.group(1))
    assert 1 <= finished < 8
    assert temp_files(out) == []
    assert json.loads((out / "progress.json").read_text())["state"] == "interrupted"

    plan = subprocess.run(
        [*command, "--dry-run"], env={**env, TAG: tag + "-plan"}, capture_output=True, text=True, timeout=120
    )
    assert plan.returncode == 0, plan.stderr
    assert f"{finished} reused from an interrupted run" in plan.stdout


def test_gc_removes_temp_files_of_dead_writers_at_any_age_and_spares_live_ones(tmp_path):
    shards = tmp_path / "out" / "shards"
    shards.mkdir(parents=True)
    host = owner_tag().split("~")[0]
    dead = shards / f".part-0001.parquet-abc.{host}~{dead_pid()}.x1y2.parquet.tmp"
    live = shards / f".part-0002.parquet-abc.{owner_tag()}.x1y2.parquet.tmp"
    untagged = shards / ".part-0003.parquet-abc.x1y2.parquet.tmp"
    other_host = shards / ".part-0004.parquet-abc.elsewhere~1.x1y2.parquet.tmp"
    for path in (dead, live, untagged, other_host):
        path.write_bytes(b"partial")
    deleted = collect_garbage(OutputDir(str(tmp_path / "out")), keep=1, min_age_s=3600)
    assert deleted == [f"shards/{dead.name}"]
    assert live.exists() and untagged.exists() and other_host.exists()

    # The interrupted run's own cleanup uses the same rule.
    dead.write_bytes(b"partial")
    assert remove_dead_temp_files(str(tmp_path / "out"), ("shards",), wait_s=0) == [f"shards/{dead.name}"]
