"""Scale benchmarks for work units: many small files, and one big file beside small ones.

    python jobs/bench_scale.py small-files --model-path .demo-model --files 2000 --rows 5
    python jobs/bench_scale.py big-file --model-path .demo-model --rows 200000 --nodes 3 --unit-rows 10000

`small-files` runs the job on a local Ray of 2 CPUs (its own temp dir) and prints one JSON
line (files, rows, tokens, wall seconds, tokens/s). It uses only options every e5ray
version has, so the same script measures the code before work units (run it with
PYTHONPATH pointing at that checkout). `big-file` runs a simulated cluster of `--nodes`
nodes of 1 CPU each and prints the actors' utilisation: the units' busy seconds over
(actors x the job's wall seconds).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from e5ray.config import JobConfig
from e5ray.job import run_job
from e5ray.testing.words import sample_words

TMP = "/tmp"  # Ray's unix socket paths limit the temp dir's length


def texts(n: int, seed: int) -> list[str]:
    import random

    rng, words = random.Random(seed), sample_words()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 40))) for _ in range(n)]


def write_parquet(path: Path, first_id: int, n: int, seed: int, row_group_size: int = 10_000) -> None:
    table = pa.table({"id": list(range(first_id, first_id + n)), "text": texts(n, seed)})
    pq.write_table(table, path, row_group_size=row_group_size)


def isolated_temp() -> str:
    temp = tempfile.mkdtemp(prefix="e5b-", dir=TMP)
    os.makedirs(f"{temp}/ray")
    os.environ["RAY_TMPDIR"] = temp  # where Ray records (and looks up) the current cluster
    return temp


def job(inp: Path, out: Path, model_path: str, **options: Any) -> tuple[dict[str, Any], float]:
    config = JobConfig.from_options(input=str(inp), output=str(out), model="demo", model_path=model_path, **options)
    t0 = time.perf_counter()
    manifest = run_job(config).to_dict()
    return manifest, time.perf_counter() - t0


def small_files(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="e5sf-"))
    (work / "in").mkdir()
    for i in range(args.files):
        write_parquet(work / "in" / f"f{i:05d}.parquet", i * args.rows, args.rows, i)
    temp = isolated_temp()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _temp_dir=temp, _node_ip_address="127.0.0.1")
    try:
        manifest, seconds = job(work / "in", work / "out", args.model_path)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    tokens = manifest["totals"]["tokens"]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "small-files",
        "files": args.files,
        "rows": manifest["totals"]["embedded"],
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "embed_tokens_per_s": manifest["run"]["tokens_per_s"],
    }


def big_file(args: argparse.Namespace) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    work = Path(tempfile.mkdtemp(prefix="e5bf-"))
    (work / "in").mkdir()
    write_parquet(work / "in" / "big.parquet", 0, args.rows, 1, row_group_size=args.row_group_size)
    for i in range(5):
        write_parquet(work / "in" / f"small-{i}.parquet", 10_000_000 + 1000 * i, 500, 100 + i)
    temp = isolated_temp()
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "temp_dir": temp, "include_dashboard": False})
    for _ in range(args.nodes - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes()
    import ray._private.services as services

    # ray.init would turn 127.0.0.1 into this machine's routable address, where nothing listens.
    services.resolve_ip_for_localhost = lambda host: host
    ray.init(address=cluster.address, logging_level="WARNING", _node_ip_address="127.0.0.1")
    try:
        manifest, seconds = job(
            work / "in",
            work / "out",
            args.model_path,
            threads_per_actor=1,
            max_actors=args.nodes,
            unit_rows=args.unit_rows,
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    busy = sum(e["seconds"] for e in manifest["shards"])
    shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "big-file",
        "nodes": args.nodes,
        "units": len(manifest["shards"]),
        "rows": manifest["totals"]["embedded"],
        "job_seconds": round(seconds, 2),
        "run_seconds": manifest["run"]["seconds"],
        "busy_unit_seconds": round(busy, 2),
        "utilisation": round(busy / (args.nodes * manifest["run"]["seconds"]), 3),
    }


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    sf = sub.add_parser("small-files")
    sf.add_argument("--files", type=int, default=2000)
    sf.add_argument("--rows", type=int, default=5)
    bf = sub.add_parser("big-file")
    bf.add_argument("--rows", type=int, default=200_000)
    bf.add_argument("--row-group-size", type=int, default=5000)
    bf.add_argument("--nodes", type=int, default=3)
    bf.add_argument("--unit-rows", type=int, default=10_000)
    for p in (sf, bf):
        p.add_argument("--model-path", required=True)
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    result = small_files(args) if args.bench == "small-files" else big_file(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main(parse_args())
