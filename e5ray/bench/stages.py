"""Running one stage in a fresh Python process (`python -m e5ray.bench --stage ...`).

A fresh process per contestant makes its peak RSS its own and keeps one contestant's
threads, caches and arenas from warming another's. The parent also records how much of
the machine other processes used meanwhile: a shared machine makes timings noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from e5ray.bench.contestants import stage_embedder, stage_fastembed, stage_job, stage_quantize
from e5ray.bench.monitor import machine_cpu_times, own_cpu_seconds, self_peak_rss_mb
from e5ray.bench.sweep import stage_sweep

STAGES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "fastembed": stage_fastembed,
    "embedder": stage_embedder,
    "job": stage_job,
    "sweep": stage_sweep,
    "quantize": stage_quantize,
}


def run_stage(stage: str, params: dict[str, Any], workdir: Path, tag: str | None = None) -> dict[str, Any]:
    """Run `stage` in a fresh Python process; returns its result with its peak RSS."""
    tag = tag or stage
    params_path = workdir / f"{tag}.params.json"
    result_path = workdir / f"{tag}.result.json"
    log_path = workdir / f"{tag}.log"
    params_path.write_text(json.dumps(params))
    result_path.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "e5ray.bench",
        "--stage",
        stage,
        "--params",
        str(params_path),
        "--result",
        str(result_path),
    ]
    # The job's local Ray gets a temp dir of its own: a bare ray.init() would otherwise join
    # whatever cluster Ray's default temp dir names (another user's, or a dead one).
    # Short, under /tmp: Ray's unix socket paths have a length limit.
    ray_tmp = tempfile.mkdtemp(prefix="e5rb-", dir="/tmp")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmp
    t0, m0 = time.perf_counter(), machine_cpu_times()
    try:
        with open(log_path, "wb") as log:
            proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    wall, m1 = time.perf_counter() - t0, machine_cpu_times()
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"benchmark stage {tag!r} failed (exit {proc.returncode}); log {log_path}:\n{tail}")
    result = json.loads(result_path.read_text())
    result["process_seconds"] = round(wall, 2)
    # How much of the machine others used meanwhile (a shared machine makes timings noisy).
    capacity = m1["total"] - m0["total"]
    others = (m1["busy"] - m0["busy"]) - result.get("stage_cpu_seconds", 0.0)
    result["machine"] = {
        "others_cpu_share": round(max(0.0, others) / capacity, 3) if capacity > 0 else None,
        "steal_share": round((m1["steal"] - m0["steal"]) / capacity, 3) if capacity > 0 else None,
    }
    return result


def stage_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the stage process: run one stage, write its result with its peak RSS and CPU time."""
    parser = argparse.ArgumentParser(description="one benchmark stage (used by jobs/benchmark.py)")
    parser.add_argument("--stage", choices=sorted(STAGES), required=True)
    parser.add_argument("--params", required=True)
    parser.add_argument("--result", required=True)
    args = parser.parse_args(argv)
    params = json.loads(Path(args.params).read_text())
    result = STAGES[args.stage](params)
    result["peak_rss_mb"] = self_peak_rss_mb()
    if "descendants_cpu_seconds" in result:  # the job: Ray's processes are not all reaped by this one
        me = resource.getrusage(resource.RUSAGE_SELF)
        result["stage_cpu_seconds"] = me.ru_utime + me.ru_stime + result["descendants_cpu_seconds"]
    else:
        result["stage_cpu_seconds"] = own_cpu_seconds()
    Path(args.result).write_text(json.dumps(result, indent=1))
    return 0
