"""Benchmark the row-level refresh: a full embed, a rewritten "next day" export, the refresh.

    python jobs/refresh_benchmark.py --shape e5-small --docs 20000 --shards 8 --out refresh.json

Day 2 rewrites every file and reshuffles rows across them, edits 5% of the texts, adds 2%
and deletes 1%. Prints both wall times and their ratio, the rows the refresh embedded
against those that changed, and the requests and bytes it read from the previous version.
The machinery lives in e5ray/bench/refresh.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys

from e5ray.bench.refresh import RefreshBenchConfig, format_refresh_report, run_refresh_benchmark
from e5ray.testing.shapes import SHAPES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = RefreshBenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default=defaults.shape)
    parser.add_argument("--docs", type=int, default=defaults.docs)
    parser.add_argument("--shards", type=int, default=defaults.shards)
    parser.add_argument("--edit", type=float, default=defaults.edit, help="share of texts edited on day 2")
    parser.add_argument("--add", type=float, default=defaults.add, help="share of rows added on day 2")
    parser.add_argument("--delete", type=float, default=defaults.delete, help="share of rows deleted on day 2")
    parser.add_argument("--executor", choices=["local", "ray"], default=defaults.executor)
    parser.add_argument("--threads", type=int, default=None, help="ONNX threads (default: every CPU allowed)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workdir", default=None, help="keeps the model between runs (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    cfg = RefreshBenchConfig(
        shape=args.shape,
        docs=args.docs,
        shards=args.shards,
        edit=args.edit,
        add=args.add,
        delete=args.delete,
        executor=args.executor,
        threads=args.threads,
        seed=args.seed,
        workdir=args.workdir,
    )
    result = run_refresh_benchmark(cfg)
    print(format_refresh_report(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
