"""Whole processes, start to exit, on a 600-document corpus with an e5-small-shaped model:
the in-process embedder's embed time beside `e5ray embed` with `--executor ray` (a fresh local
Ray) and `--executor auto` (the short path), then a refresh that edits 7% of the rows (auto and
ray), each the wall time of a fresh `python -m e5ray.cli` process and its `--json` summary.

    PYTHONPATH=$PWD python bench-results/short-path-whole-process.py /tmp/WORKDIR [EXECUTOR ...] [--no-embedder]
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.bench.cluster.job_vs_embedder import sample_texts, time_embedder
from e5ray.testing.export import write_model

SHAPE, DOCS, SHARDS, EDITED = "e5-small", 600, 4, 42  # 42 of 600 rows: 7%


def write_corpus(folder: Path, docs: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    per = len(docs) // SHARDS
    for s in range(SHARDS):
        rows = range(s * per, (s + 1) * per)
        pq.write_table(pa.table({"id": list(rows), "text": [docs[i] for i in rows]}), folder / f"s{s}.parquet")


def embed(inp: Path, out: Path, model: Path, *extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="e5s-", dir="/tmp")  # a fresh, isolated local Ray
    cmd = [sys.executable, "-m", "e5ray.cli", "embed", f"--input={inp}", f"--output={out}"]
    cmd += [f"--model=e5ray-bench/{SHAPE}", f"--model-path={model}", "--json", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    load = open("/proc/loadavg").read().split()[0]
    row = {"wall_s": round(wall, 2), "load": load, **{k: summary.get(k) for k in ("executor", "executor_reason")}}
    row |= {"tokens": summary["totals"]["tokens"], "startup": summary["startup"], "reuse": summary.get("reuse")}
    print(" ".join(extra) or "(defaults)", json.dumps(row), flush=True)
    return row


def main(work: Path) -> None:
    model = work / f"model-{SHAPE}"
    if not (model / "config.json").exists():
        write_model(model, graph="export", arch="bert", shape=SHAPE, seed=0)
    rng = random.Random(0)
    pool = sample_texts()
    docs = [f"{rng.choice(pool)} ({i})" for i in range(DOCS)]  # distinct texts: nothing folds
    run = Path(tempfile.mkdtemp(prefix="run-", dir=work))
    tokens, seconds = 0, float("nan")
    if "--no-embedder" not in sys.argv:
        tokens, seconds = time_embedder(model, SHAPE, docs)
    print(
        "embedder",
        json.dumps({"tokens": tokens, "embed_s": round(seconds, 2), "load": open("/proc/loadavg").read().split()[0]}),
    )
    day2 = list(docs)
    for i in rng.sample(range(DOCS), EDITED):
        day2[i] = f"{docs[i]} edited"
    executors = [a for a in sys.argv[2:] if not a.startswith("--")] or ["ray", "auto", "ray", "auto"]
    for n, executor in enumerate(executors):
        inp, out = run / f"in-{n}", run / f"out-{n}"
        write_corpus(inp, docs)
        full = embed(inp, out, model, f"--executor={executor}")
        write_corpus(inp, day2)  # the day-2 export written over day 1's files: a scheduled refresh
        refresh = embed(inp, out, model, f"--executor={executor}")
        print(
            f"ratio {executor}: refresh/full = {refresh['wall_s'] / full['wall_s']:.3f};",
            f"full/embedder = {full['wall_s'] / seconds:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
