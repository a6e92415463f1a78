"""Many small files on a local Ray: the job's tokens/s when every file is a unit of a few rows.

    python -m e5ray.bench scale small-files --model-path DEMO --files 2000 --rows 5
    python e5ray/bench/cluster/small_files.py --model-path DEMO --files 2000 --rows 5 --executor local

Runs the job on `--files` Parquet files of `--rows` rows on a local Ray of 2 CPUs (its own
temp dir, never the cluster in RAY_ADDRESS), or with `--executor local` in this process
without Ray, and prints one JSON line (files, rows, tokens, wall seconds, tokens/s).

Invariant: this module imports nothing of e5ray but the library's `JobConfig`, `run_job` and
`e5ray.testing.words`, options every e5ray version has, so run as a file (the second line
above) with PYTHONPATH naming another checkout, it measures that checkout's code: `scale
small-files --before CHECKOUT` runs it so, side by side with this tree (`side_by_side`).
The corpus and job helpers of the other scale benchmarks live here for that reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from e5ray.config import JobConfig
from e5ray.job.run import run_job
from e5ray.testing.words import sample_words

TMP = "/tmp"  # Ray's unix socket paths limit the temp dir's length


def texts(n: int, seed: int) -> list[str]:
    """`n` texts of 8-40 words of the sample word list, the same for the same seed."""
    rng, words = random.Random(seed), sample_words()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) for _ in range(n)]


def write_parquet(path: Path, first_id: int, n: int, seed: int, row_group_size: int = 10_000) -> None:
    table = pa.table({"id": list(range(first_id, first_id + n)), "text": texts(n, seed)})
    pq.write_table(table, path, row_group_size=row_group_size)


def isolated_temp() -> str:
    """A short temp dir for a Ray of this process's own, named in RAY_TMPDIR."""
    temp = tempfile.mkdtemp(prefix="e5b-", dir=TMP)
    os.makedirs(f"{temp}/ray")
    os.environ["RAY_TMPDIR"] = temp  # where Ray records (and looks up) the current cluster
    return temp


def start_local_ray(temp: str) -> None:
    """A local Ray of 2 CPUs in `temp`, on loopback, without a dashboard."""
    ray.init(
        num_cpus=2, include_dashboard=False, logging_level=logging.WARNING, _temp_dir=temp, _node_ip_address="127.0.0.1"
    )


def timed_job(
    inp: Path, out: Path, model_path: str, run_with: Any = None, **options: Any
) -> tuple[dict[str, Any], float]:
    """The job on `inp`: its manifest and wall seconds. `run_with`: an executor callable to use
    instead of the configured one; `options`: JobConfig options by flag name (`executor="local"`
    among them)."""
    options.setdefault("model", "demo")
    options.setdefault("executor", "ray")  # these benchmarks measure Ray unless told otherwise
    config = JobConfig.from_options(input=str(inp), output=str(out), model_path=model_path, **options)
    t0 = time.perf_counter()
    manifest = run_job(config, run_with).to_dict()
    return manifest, time.perf_counter() - t0


def small_files(files: int, rows: int, model_path: str, executor: str) -> dict[str, Any]:
    """One run of the job on `files` files of `rows` rows; what it embedded and how fast."""
    work = Path(tempfile.mkdtemp(prefix="e5sf-"))
    (work / "in").mkdir()
    for i in range(files):
        write_parquet(work / "in" / f"f{i:05d}.parquet", i * rows, rows, i)
    if executor == "local":  # in this process, no Ray; `executor` is only passed when asked for,
        # so a tree from before the option existed still runs its default
        manifest, seconds = timed_job(work / "in", work / "out", model_path, executor="local")
    else:
        temp = isolated_temp()
        start_local_ray(temp)
        try:
            manifest, seconds = timed_job(work / "in", work / "out", model_path)
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
    tokens = manifest["totals"]["tokens"]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "small-files",
        "executor": executor,
        "files": files,
        "rows": manifest["totals"]["embedded"],
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "embed_tokens_per_s": manifest["run"]["tokens_per_s"],
    }


def run_in_tree(tree: Path, files: int, rows: int, model_path: str, executor: str) -> dict[str, Any]:
    """This file run as a child process whose working dir and PYTHONPATH are `tree` (Ray's
    workers import `e5ray` from there too); its JSON line."""
    argv = ["--files", str(files), "--rows", str(rows), "--model-path", model_path, "--executor", executor]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *argv],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def side_by_side(
    before: Path, before_executor: str, executors: Sequence[str], files: int, rows: int, model_path: str, repeat: int
) -> dict[str, Any]:
    """The run in `before` (with `before_executor`) and in this tree (with each of
    `executors`), in turn, `repeat` times; prints each run's line as it ends and returns the
    ratios of each after run's tokens/s to the before run's (per round and over the sums)."""
    here = Path(__file__).resolve().parents[3]
    trees = [("before", before.resolve(), before_executor)] + [(f"after-{e}", here, e) for e in executors]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in trees}
    for _ in range(repeat):
        for name, tree, executor in trees:
            load = os.getloadavg()[0]
            last = run_in_tree(tree, files, rows, model_path, executor)
            result = {"tree": name, "path": str(tree), "load_at_start": round(load, 2), **last}
            print(json.dumps(result), flush=True)
            runs[name].append(result)

    def rate(rs: list[dict[str, Any]]) -> float:
        return sum(r["tokens"] for r in rs) / sum(r["seconds"] for r in rs)

    speedups = {}
    for name in runs:
        if name != "before":
            pairs = [a["tokens_per_s"] / b["tokens_per_s"] for b, a in zip(runs["before"], runs[name], strict=True)]
            speedups[name] = {
                "per_run": [round(x, 2) for x in pairs],
                "over_sums": round(rate(runs[name]) / rate(runs["before"]), 2),
            }
    return {"bench": "small-files-side-by-side", "files": files, "rows": rows, "speedup": speedups}


def main(argv: Sequence[str] | None = None) -> int:
    """One run in this process, as `side_by_side` starts it in another tree."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=5)
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--executor", choices=["ray", "local"], default="ray")
    args = parser.parse_args(argv)
    print(json.dumps(small_files(args.files, args.rows, args.model_path, args.executor)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
