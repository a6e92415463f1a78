"""jobs/bench_scale.py at a tiny size, so the scale-out benchmark cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_small_files_benchmark_embeds_every_row_and_reports_its_speed(tmp_path, bert_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)  # its own local Ray, never another cluster
    args = ["small-files", "--model-path", str(bert_model_dir), "--files", "6", "--rows", "2"]
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_scale.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["files"], result["rows"]) == (6, 12)
    assert result["tokens"] > 12 and result["tokens_per_s"] > 0


def test_the_small_files_benchmark_compares_trees_and_executors_side_by_side_without_ray(tmp_path, bert_model_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    args = ["small-files", "--model-path", str(bert_model_dir), "--files", "4", "--rows", "2"]
    args += ["--before", str(REPO), "--before-executor", "local", "--executor", "local"]
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_scale.py"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(x) for x in done.stdout.strip().splitlines()]
    runs, summary = lines[:-1], lines[-1]
    assert [(r["tree"], r["executor"], r["rows"]) for r in runs] == [
        ("before", "local", 8),
        ("after-local", "local", 8),
    ]
    assert all(r["load_at_start"] >= 0 and r["tokens_per_s"] > 0 for r in runs)
    assert summary["speedup"]["after-local"]["over_sums"] > 0
