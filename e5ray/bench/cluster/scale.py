"""Scale benchmarks of work units on Ray: many small files, a big file, start-up, the job vs the embedder.

    python -m e5ray.bench scale small-files --model-path .demo-model --files 2000 --rows 5
    python -m e5ray.bench scale small-files --model-path .demo-model --files 2000 --rows 5 --before ../e5ray-main
    python -m e5ray.bench scale small-files --model-path .demo-model --before ../old --executor local ray
    python -m e5ray.bench scale startup --model-path .demo-model --executor ray   # or local
    python -m e5ray.bench scale job-vs-embedder --shards 8 --docs 450 --shape e5-small
    python -m e5ray.bench scale big-file --model-path .demo-model --rows 200000 --nodes 3 --unit-rows 10000

Each prints one JSON line (`small-files --before` first prints one per run).

- `small-files` (`e5ray.bench.cluster.small_files`): the job on a local Ray of 2 CPUs (its own
  temp dir), or with `--executor local` in this process without Ray: files, rows, tokens,
  wall seconds, tokens/s. It uses only options every e5ray version has, so it measures the
  code of another checkout too. With `--before CHECKOUT` it measures both trees side by side
  in one run: each run is a child process whose working dir and PYTHONPATH are its tree (Ray's
  workers import `e5ray` from there), alternating before and after runs `--repeat` times (one
  after run per `--executor` named, the before tree with `--before-executor`), then prints
  the ratio of each after run's tokens/s to the before run's (each round, and over the sums),
  and the load average when each run started.
- `big-file` (`big_file`): a simulated cluster of `--nodes` nodes of 1 CPU each; the actors'
  utilisation (the units' busy seconds over actors x the run's seconds) with a per-actor
  timeline (`timeline`).
- `startup` (`startup`): time to first vector of `e5ray embed`, step by step.
- `job-vs-embedder` (`job_vs_embedder`): the whole job against the in-process embedder.

Imports Ray (see `e5ray.bench.cluster`); run through `python -m e5ray.bench`, which imports
this module only for this subcommand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e5ray.bench.cluster.big_file import big_file
from e5ray.bench.cluster.job_vs_embedder import job_vs_embedder
from e5ray.bench.cluster.small_files import side_by_side, small_files
from e5ray.bench.cluster.startup import startup


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench scale", description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="bench", required=True)
    sf = sub.add_parser("small-files", help="many small files, one unit each")
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
    bf = sub.add_parser("big-file", help="one big file beside small ones on a simulated cluster")
    bf.add_argument("--rows", type=int, default=200_000)
    bf.add_argument("--row-group-size", type=int, default=5000)
    bf.add_argument("--nodes", type=int, default=3)
    bf.add_argument("--unit-rows", type=int, help="rows per work unit (default: e5ray's own unit sizing)")
    for p in (sf, bf):
        p.add_argument("--model-path", required=True)
    st = sub.add_parser("startup", help="time to first vector of `e5ray embed`")
    st.add_argument("--model-path", required=True)
    st.add_argument("--executor", choices=["ray", "local"], default="ray")
    st.add_argument("--rows", type=int, default=5)
    st.add_argument("--repeat", type=int, default=2)
    st.add_argument("--join", action="store_true", help="join the running Ray in RAY_ADDRESS instead of starting one")
    je = sub.add_parser("job-vs-embedder", help="the whole job against the in-process embedder")
    je.add_argument("--shards", type=int, default=8)
    je.add_argument("--docs", type=int, default=450, help="documents per shard, drawn from samples/corpus")
    je.add_argument("--shape", default="e5-small", help="a shape of e5ray.testing.shapes")
    je.add_argument("--workdir", default="/tmp/e5ray-bench", help="where the random-weight model is written once")
    return parser.parse_args(argv)


def run_small_files(args: argparse.Namespace) -> dict[str, Any]:
    if args.before:
        return side_by_side(
            Path(args.before), args.before_executor, args.executor, args.files, args.rows, args.model_path, args.repeat
        )
    if len(args.executor) != 1:
        raise SystemExit("small-files: one --executor without --before")
    return small_files(args.files, args.rows, args.model_path, args.executor[0])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bench == "small-files":
        result = run_small_files(args)
    elif args.bench == "startup":
        result = startup(args)
    elif args.bench == "job-vs-embedder":
        result = job_vs_embedder(args)
    else:
        result = big_file(args)
    print(json.dumps(result))
    return 0
