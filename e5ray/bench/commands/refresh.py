"""The row-level refresh against a full embed, on a rewritten "next day" export.

    python -m e5ray.bench refresh --shape e5-small --docs 20000 --shards 8 --out refresh.json

Day 1: a full embed of `--docs` synthetic documents in `--shards` Parquet files. Day 2
rewrites every file and reshuffles rows across them, edits 5% of the texts, adds 2% and
deletes 1%; the refresh runs on the same output. Prints both wall times and their ratio, the
rows the refresh embedded against those that changed (the invariant: only those), and the
requests and bytes it read from the previous version. The machinery is `e5ray.bench.refresh`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from e5ray.bench.refresh import RefreshBenchConfig, format_refresh_report, run_refresh_benchmark
from e5ray.testing.shapes import SHAPES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = RefreshBenchConfig()
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench refresh", description=(__doc__ or "").splitlines()[0])
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
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
