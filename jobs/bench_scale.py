"""Scale benchmarks for work units: many small files, and one big file beside small ones.

    python jobs/bench_scale.py small-files --model-path .demo-model --files 2000 --rows 5
    python jobs/bench_scale.py small-files --model-path .demo-model --files 2000 --rows 5 --before ../e5ray-main
    python jobs/bench_scale.py small-files --model-path .demo-model --before ../old --executor local ray
    python jobs/bench_scale.py startup --model-path .demo-model --executor ray   # or local
    python jobs/bench_scale.py job-vs-embedder --shards 8 --docs 450 --shape e5-small
    python jobs/bench_scale.py big-file --model-path .demo-model --rows 200000 --nodes 3 --unit-rows 10000

`small-files` runs the job on a local Ray of 2 CPUs (its own temp dir), or with
`--executor local` in this process without Ray, and prints one JSON
line (files, rows, tokens, wall seconds, tokens/s). It uses only options every e5ray
version has, so the same script measures the code before work units (run it with
PYTHONPATH pointing at that checkout). With `--before CHECKOUT` it measures both trees
side by side in one run: each run is a child process of this script whose working dir
and PYTHONPATH are its tree (Ray's workers import `e5ray` from there), alternating
before and after runs `--repeat` times (one after run per `--executor` named, the before
tree with `--before-executor`), then prints the ratio of each after run's tokens/s to the
before run's (each round, and over the sums), and the load average when each run started. `big-file` runs a simulated cluster of `--nodes`
nodes of 1 CPU each and prints the actors' utilisation: the units' busy seconds over
(actors x the job's wall seconds), with a per-actor timeline (`bench_timeline.py`).
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

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from e5ray.config import JobConfig
from e5ray.job.run import run_job
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


def job(inp: Path, out: Path, model_path: str, run_with: Any = None, **options: Any) -> tuple[dict[str, Any], float]:
    """The job on `inp`; `run_with`: an executor callable to use instead of the configured
    one; `options`: JobConfig options by flag name (`executor="local"` among them)."""
    options.setdefault("model", "demo")
    config = JobConfig.from_options(input=str(inp), output=str(out), model_path=model_path, **options)
    t0 = time.perf_counter()
    manifest = run_job(config, run_with).to_dict()
    return manifest, time.perf_counter() - t0


def small_files(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="e5sf-"))
    (work / "in").mkdir()
    for i in range(args.files):
        write_parquet(work / "in" / f"f{i:05d}.parquet", i * args.rows, args.rows, i)
    if args.executor == "local":  # in this process, no Ray; `executor` is only passed when asked for,
        # so a tree from before the option existed still runs its default
        manifest, seconds = job(work / "in", work / "out", args.model_path, executor="local")
    else:
        temp = isolated_temp()
        ray.init(
            num_cpus=2, include_dashboard=False, logging_level="WARNING", _temp_dir=temp, _node_ip_address="127.0.0.1"
        )
        try:
            manifest, seconds = job(work / "in", work / "out", args.model_path)
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)
    tokens = manifest["totals"]["tokens"]
    shutil.rmtree(work, ignore_errors=True)
    return {
        "bench": "small-files",
        "executor": args.executor,
        "files": args.files,
        "rows": manifest["totals"]["embedded"],
        "tokens": tokens,
        "seconds": round(seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
        "embed_tokens_per_s": manifest["run"]["tokens_per_s"],
    }


def small_files_side_by_side(args: argparse.Namespace) -> dict[str, Any]:
    """The small-files run in `args.before` (with `--before-executor`) and in this script's
    own tree (with each of `--executor`), in turn, `--repeat` times."""
    script, here = Path(__file__).resolve(), Path(__file__).resolve().parents[1]
    argv = ["small-files", "--files", str(args.files), "--rows", str(args.rows), "--model-path", args.model_path]
    trees = [("before", Path(args.before).resolve(), args.before_executor)]
    trees += [(f"after-{e}", here, e) for e in args.executor]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in trees}
    for _ in range(args.repeat):
        for name, tree, executor in trees:
            env = {**os.environ, "PYTHONPATH": str(tree)}
            load = os.getloadavg()[0]
            done = subprocess.run(
                [sys.executable, str(script), *argv, "--executor", executor],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            last = json.loads(done.stdout.strip().splitlines()[-1])
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
    return {"bench": "small-files-side-by-side", "files": args.files, "rows": args.rows, "speedup": speedups}


def big_file(args: argparse.Namespace) -> dict[str, Any]:
    from ray.cluster_utils import Cluster

    load_at_start = round(os.getloadavg()[0], 2)
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
    import bench_timeline

    events = str(work / "timeline.jsonl")
    sizing = {"unit_rows": args.unit_rows} if args.unit_rows else {}  # else the product's default
    try:
        job_start = time.time()
        manifest, seconds = job(
            work / "in",
            work / "out",
            args.model_path,
            run_with=bench_timeline.install(events),
            threads_per_actor=1,
            max_actors=args.nodes,
            **sizing,
        )
        timeline = bench_timeline.summarise(events, job_start, time.time())
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
        "load_at_start": load_at_start,
        "timeline": timeline,
    }


def sample_texts() -> list[str]:
    """The good texts of the sample corpus (samples/corpus), read with e5ray's own readers."""
    from e5ray.corpus.sources import discover, read_chunks

    texts: list[str] = []
    for source in discover(str(Path(__file__).resolve().parents[1] / "samples" / "corpus")):
        for chunk in read_chunks(source):
            texts.extend(t for t in chunk.texts if isinstance(t, str) and t.strip())
    return texts


def job_vs_embedder(args: argparse.Namespace) -> dict[str, Any]:
    """`--shards` Parquet shards of `--docs` documents drawn from the sample corpus: the
    in-process embedder (model loaded and warmed up first, as jobs/benchmark.py's
    contestant 2), then the whole job on a local Ray of 2 CPUs (ray.init and a one-shard
    warm-up job not counted, as its contestant 3: the timed job pays planning, actor
    start, model load, embedding, writing and the commit)."""
    import random

    from e5ray.model.embedder import E5Embedder, available_cpus
    from e5ray.testing.export import write_model

    model_dir = Path(args.workdir) / f"model-export-bert-{args.shape}"
    if not (model_dir / "config.json").exists():
        write_model(model_dir, graph="export", arch="bert", shape=args.shape, seed=0)
    pool, rng = sample_texts(), random.Random(0)
    docs = [rng.choice(pool) for _ in range(args.shards * args.docs)]
    work = Path(tempfile.mkdtemp(prefix="e5je-"))
    for d in ("in", "warmup"):
        (work / d).mkdir()
    for s in range(args.shards):
        rows = range(s * args.docs, (s + 1) * args.docs)
        pq.write_table(pa.table({"id": list(rows), "text": [docs[i] for i in rows]}), work / "in" / f"s{s:02d}.parquet")
    pq.write_table(pa.table({"id": [0], "text": [docs[0]]}), work / "warmup" / "w.parquet")

    embedder = E5Embedder(f"e5ray-bench/{args.shape}", model_path=model_dir, threads=available_cpus())
    embedder.embed(docs[:32])
    t0 = time.perf_counter()
    alone = embedder.embed(docs, "passage")
    embedder_seconds = time.perf_counter() - t0
    del embedder

    temp = isolated_temp()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", _temp_dir=temp, _node_ip_address="127.0.0.1")
    try:
        # Every row embedded, as the embedder does: the docs repeat the corpus's 330 texts,
        # and row reuse would fold the repeats within a shard (fewer tokens, not faster).
        model = {"model": f"e5ray-bench/{args.shape}", "reuse": "none"}
        job(work / "warmup", work / "warmup-out", str(model_dir), **model)
        manifest, job_seconds = job(work / "in", work / "out", str(model_dir), **model)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    tokens = manifest["totals"]["tokens"]
    assert tokens == alone.tokens, (tokens, alone.tokens)  # the same texts, the same tokens
    return {
        "bench": "job-vs-embedder",
        "shape": args.shape,
        "shards": args.shards,
        "docs": len(docs),
        "tokens": tokens,
        "embedder_seconds": round(embedder_seconds, 2),
        "embedder_tokens_per_s": round(tokens / embedder_seconds, 1),
        "job_seconds": round(job_seconds, 2),
        "job_tokens_per_s": round(tokens / job_seconds, 1),
        "job_over_embedder": round(embedder_seconds / job_seconds, 3),
        "job_embed_stage_tokens_per_s": manifest["run"]["tokens_per_s"],
    }


STARTUP_CHILD = r"""
import json, sys, time
t0 = time.time()
stamps = {"start": t0}
import e5ray.cli.main as cli
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
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    sf = sub.add_parser("small-files")
    sf.add_argument("--files", type=int, default=2000)
    sf.add_argument("--rows", type=int, default=5)
    sf.add_argument("--before", help="another checkout of e5ray, measured side by side with this one")
    sf.add_argument("--repeat", type=int, default=1, help="with --before: rounds of before and after runs")
    sf.add_argument(
        "--executor",
        nargs="+",
        choices=["ray", "local"],
        default=["ray"],
        help="this tree's executor; with --before, one after run per executor named",
    )
    sf.add_argument("--before-executor", choices=["ray", "local"], default="ray", help="the --before tree's executor")
    bf = sub.add_parser("big-file")
    bf.add_argument("--rows", type=int, default=200_000)
    bf.add_argument("--row-group-size", type=int, default=5000)
    bf.add_argument("--nodes", type=int, default=3)
    bf.add_argument("--unit-rows", type=int, help="rows per work unit (default: e5ray's own unit sizing)")
    for p in (sf, bf):
        p.add_argument("--model-path", required=True)
    st = sub.add_parser("startup")
    st.add_argument("--model-path", required=True)
    st.add_argument("--executor", choices=["ray", "local"], default="ray")
    st.add_argument("--rows", type=int, default=5)
    st.add_argument("--repeat", type=int, default=2)
    st.add_argument("--join", action="store_true", help="join the running Ray in RAY_ADDRESS instead of starting one")
    je = sub.add_parser("job-vs-embedder")
    je.add_argument("--shards", type=int, default=8)
    je.add_argument("--docs", type=int, default=450, help="documents per shard, drawn from samples/corpus")
    je.add_argument("--shape", default="e5-small", help="a shape of e5ray.testing.shapes")
    je.add_argument("--workdir", default="/tmp/e5ray-bench", help="where the random-weight model is written once")
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    if args.bench == "small-files":
        if args.before:
            result = small_files_side_by_side(args)
        else:
            if len(args.executor) != 1:
                raise SystemExit("small-files: one --executor without --before")
            args.executor = args.executor[0]
            result = small_files(args)
    elif args.bench == "startup":
        result = startup(args)
    elif args.bench == "job-vs-embedder":
        result = job_vs_embedder(args)
    else:
        result = big_file(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main(parse_args())
