"""The change feed's cost and payoff: the change file per million rows, LanceDB --incremental against a full export, changes' peak RSS.

    python -m e5ray.bench changes --docs 20000 --shards 8 --out bench-results/changes.json

Day 1 and day 2 are the refresh benchmark's (5% edited, 2% added, 1% deleted, every file
rewritten and reshuffled), with the tiny test model by default: what is measured here does not
depend on the model's speed. The machinery is `e5ray.bench.changes`.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence

from e5ray.bench.changes import ChangesBenchConfig, format_changes_report, run_changes_benchmark
from e5ray.testing.shapes import SHAPES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = ChangesBenchConfig()
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench changes", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shape", choices=list(SHAPES), default=defaults.shape)
    parser.add_argument(
        "--dim", type=int, default=None, help="a one-layer model of this width instead of --shape (384: e5-small's)"
    )
    parser.add_argument("--docs", type=int, default=defaults.docs)
    parser.add_argument("--shards", type=int, default=defaults.shards)
    parser.add_argument("--edit", type=float, default=defaults.edit, help="share of texts edited on day 2")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--repeats", type=int, default=defaults.repeats, help="incremental/full export pairs")
    parser.add_argument("--words", type=int, default=None, help="texts of this many random words (cheap 1M rows)")
    parser.add_argument("--workdir", default=None, help="keeps the model between runs (default: a temp dir)")
    parser.add_argument("--out", default=None, help="write the result as JSON here")
    parser.add_argument("--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(asctime)s %(message)s")
    cfg = ChangesBenchConfig(
        shape=args.shape,
        dim=args.dim,
        docs=args.docs,
        shards=args.shards,
        edit=args.edit,
        seed=args.seed,
        workdir=args.workdir,
        repeats=args.repeats,
        words=args.words,
    )
    result = run_changes_benchmark(cfg)
    print(format_changes_report(result))
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0
