"""Count nodes before and after onnxruntime's transformer optimiser, per graph layout and target.

    python -m e5ray.bench fusion-counts --shape e5-large            # export and node graphs, use_gpu off and on
    python -m e5ray.bench fusion-counts --shape e5-small --speed 3  # and CPU tokens/s: fused vs unfused vs nodes

Shows whether attention fuses (Attention nodes appear, Softmax goes to 0) on each graph
layout of `e5ray.testing.export`, for the CPU and the GPU optimiser targets; with `--speed`,
also the CPU embedder's tokens/s on the three layouts of the same weights, in interleaved
rounds, and that their vectors agree. The machinery is `e5ray.bench.fusion_counts`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from e5ray.bench.fusion_counts import fusion_counts, fusion_speed
from e5ray.testing.export import GRAPHS
from e5ray.testing.shapes import SHAPES


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m e5ray.bench fusion-counts",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--shape", choices=list(SHAPES), default="e5-large")
    parser.add_argument("--arch", choices=["bert", "xlmr"], default=None, help="default: the real model's")
    parser.add_argument("--graphs", default=",".join(GRAPHS), help=f"comma-separated, of {', '.join(GRAPHS)}")
    parser.add_argument("--full-vocab", action="store_true", help="the real word table (same nodes, larger file)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.add_argument(
        "--speed", type=int, default=0, metavar="ROUNDS", help="also time the CPU embedder, interleaved"
    )
    parser.add_argument("--speed-docs", type=int, default=300, help="documents per timed round")
    parser.add_argument("--threads", type=int, default=None, help="ONNX threads for --speed (default: every CPU)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    for graph in args.graphs.split(","):
        for use_gpu in (False, True):
            try:
                counts = fusion_counts(args.shape, args.arch, graph, use_gpu, args.full_vocab)
            except ValueError as exc:
                print(f"fusion-counts: error: {exc}", file=sys.stderr)
                return 2
            if args.json:
                print(json.dumps(counts), flush=True)
                continue
            print(
                f"{counts['shape']} {counts['arch']} graph={graph} use_gpu={use_gpu}: "
                f"{counts['nodes_before']} -> {counts['nodes_after']} nodes; Softmax {counts['softmax_before']} -> "
                f"{counts['softmax_after']}; Attention {counts['attention']}; after: {counts['ops_after']}",
                flush=True,
            )
    if args.speed:
        print(json.dumps(fusion_speed(args.shape, args.speed_docs, args.speed, args.threads)), flush=True)
    return 0
