"""Time to first vector of `e5ray embed` on one small file, and where the start-up goes.

    python -m e5ray.bench scale startup --model-path DEMO --executor ray   # or local
    RAY_ADDRESS=127.0.0.1:PORT python -m e5ray.bench scale startup --model-path DEMO --executor ray --join

Runs `e5ray embed` through the CLI's own entry point `--repeat` times, each in a fresh
process (the first run makes the model's caches; later runs are what a user waits for), and
measures the seconds from the process's spawn to each step of the last run: imports, the
plan, Ray's start (or the first batch, local), the actor's model load and the first result.
The steps are stamped by wrapping the library's functions inside the child process only
(`STARTUP_CHILD`); Ray is imported there, to read its timeline, never in this process.
Without `--join` the child starts a Ray of its own (RAY_ADDRESS is dropped).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from e5ray.bench.cluster.small_files import write_parquet

CHECKOUT = Path(__file__).resolve().parents[3]

STARTUP_CHILD = r"""
import json, sys, time
t0 = time.time()
stamps = {"start": t0}
import e5ray.cli.app as cli
stamps["imports"] = time.time()
import e5ray.job.run as jobmod
import e5ray.worker.worker as worker

def stamp(name, fn):
    def inner(*args, **kwargs):
        stamps.setdefault(name + "_start", time.time())
        try:
            return fn(*args, **kwargs)
        finally:
            stamps.setdefault(name + "_end", time.time())
    return inner

real_get = jobmod.get_executor
def get_executor(name):
    run = real_get(name)
    def executor(*args):
        stamps["planned"] = time.time()
        for result in run(*args):
            stamps.setdefault("first_result", time.time())
            yield result
    return executor
jobmod.get_executor = get_executor
worker.EmbeddingWorker.__init__ = stamp("model_load", worker.EmbeddingWorker.__init__)
if sys.argv[1] == "ray":
    import e5ray.executors.ray_start as raystart
    raystart.start_local_ray = stamp("ray_start", raystart.start_local_ray)
else:
    from e5ray.model.embedder import E5Embedder
    E5Embedder.run = stamp("first_batch", E5Embedder.run)
try:
    cli.main(["embed", *sys.argv[2:], "--executor", sys.argv[1], "--quiet"])
except SystemExit:
    pass
stamps["done"] = time.time()
if sys.argv[1] == "ray":
    import ray
    for event in ray.timeline():
        name = str(event.get("name", ""))
        if "__init__" in name and "MapWorker" in name:
            stamps["actor_init_start"] = event["ts"] / 1e6
            stamps["actor_init_end"] = (event["ts"] + event["dur"]) / 1e6
print("STAMPS " + json.dumps(stamps))
"""


def startup(args: argparse.Namespace) -> dict[str, Any]:
    """Time to first vector of `e5ray embed` on one small file, run `--repeat` times in fresh
    processes (the first run makes the model's caches; later runs are what a user waits
    for), with the breakdown of the last run. Seconds from the process's spawn."""
    work = Path(tempfile.mkdtemp(prefix="e5st-"))
    (work / "in").mkdir()
    write_parquet(work / "in" / "one.parquet", 0, args.rows, 0)
    runs = []
    for i in range(args.repeat):
        argv = ["--input", str(work / "in"), "--output", str(work / f"out{i}"), "--model", "demo"]
        argv += ["--model-path", args.model_path]
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
        if not args.join:  # else: a running cluster named by RAY_ADDRESS (joined, not started)
            env.pop("RAY_ADDRESS", None)
        spawned = time.time()
        done = subprocess.run(
            [sys.executable, "-c", STARTUP_CHILD, args.executor, *argv], env=env, capture_output=True, text=True
        )
        wall = time.time() - spawned
        line = [x for x in done.stdout.splitlines() if x.startswith("STAMPS ")]
        if not line:
            raise RuntimeError(f"the start-up run printed no stamps:\n{done.stdout}\n{done.stderr}")
        st = {k: round(v - spawned, 2) for k, v in json.loads(line[0][7:]).items()}
        runs.append({"run": i + 1, "wall_s": round(wall, 2), "first_vector_s": st.get("first_result"), "stamps": st})
    shutil.rmtree(work, ignore_errors=True)
    return {"bench": "startup", "executor": args.executor, "runs": runs}
