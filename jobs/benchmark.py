"""Benchmark e5ray against plain fastembed and the hardware ceiling, on the same texts and cores.

    python jobs/benchmark.py --shape e5-small --out bench.json          # 1-4, ratios, padding, RSS
    python jobs/benchmark.py --shape e5-small --sweep --skip-fastembed --skip-job
    python jobs/benchmark.py --shape e5-small --precision int8
    python jobs/benchmark.py --device gpu --shape e5-large --docs 20000  # one H100: fp16 vs fp32, tokens/s
    python jobs/benchmark.py --model-path ~/models/multilingual-e5-small  # your own ONNX export
    python jobs/benchmark.py --graph nodes ...     # the node-by-node graph of the first tables

The random-weight model is laid out as torch.onnx exports BERT/XLM-R (`--graph export`, the
default, where attention fuses as in real exports) or node by node (`--graph nodes`).

Contestants (random-weight encoder of a real E5 shape, or your export with --model-path;
synthetic lognormal-length corpus, sized with the model's own tokenizer):
1. plain fastembed as a user calls it (`TextEmbedding(...).embed(texts)`, defaults);
2. e5ray's embedder in-process (`E5Embedder(...).embed_passages(texts)`);
3. the whole e5ray job (Parquet shards -> run_job(executor="ray") on a local Ray -> shards + manifest);
4. the ceiling: tokens/s that onnxruntime's measured MatMul FLOP/s on these cores allows.
The machinery lives in e5ray/bench/ (install with `pip install -e ".[bench]"`).
"""

from __future__ import annotations

import argparse
import sys

from e5ray.bench.config import SWEEP_BUDGETS, SWEEP_ROWS, BenchConfig
from e5ray.bench.run import run_benchmark
from e5ray.testing.export import GRAPHS
from e5ray.testing.shapes import SHAPES


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument(
        "--shape",
        choices=[s for s in SHAPES],
        default=None,
        help="encoder shape (default: e5-small on CPU, e5-large on GPU)",
    )
    parser.add_argument(
        "--arch",
        choices=["bert", "xlmr"],
        default=None,
        help="default: the real model's (bert for e5-small, xlmr for base/large)",
    )
    parser.add_argument(
        "--graph",
        choices=GRAPHS,
        default="export",
        help="layout of the random-weight model: as torch exports it (attention fuses) or node by node",
    )
    parser.add_argument(
        "--model-path",
        default=None,
        help="a real exported model directory (model.onnx or onnx/model.onnx beside tokenizer.json and "
        "config.json) instead of a random-weight one; not with --shape or --arch",
    )
    parser.add_argument(
        "--docs", type=int, default=None, help="documents for the comparison (default: 600 on CPU, 20000 on GPU)"
    )
    parser.add_argument(
        "--fastembed-docs",
        type=int,
        default=None,
        help="fewer docs for plain fastembed (its tokens/s is what is compared); default all",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="threads for every contestant (default: every CPU this process may use)",
    )
    parser.add_argument(
        "--precision",
        choices=["fp32", "int8"],
        default="fp32",
        help="CPU: int8 also reports speed and agreement with fp32 (the GPU path runs fp16)",
    )
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument(
        "--rss-scale",
        type=int,
        default=10,
        help="also run the job on this many times the docs to check that its peak RSS is flat (<= 1 skips)",
    )
    parser.add_argument(
        "--shard-rows",
        type=int,
        default=2048,
        help="rows per Parquet shard fed to the job (default: the job's chunk_rows, so a shard "
        "is sorted as one chunk; smaller shards pad more)",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="E5Embedder tokens/s over token budgets x max rows, and ORT spinning on/off",
    )
    parser.add_argument("--sweep-docs", type=int, default=400)
    parser.add_argument("--sweep-budgets", type=_ints, default=SWEEP_BUDGETS, help="comma-separated")
    parser.add_argument("--sweep-rows", type=_ints, default=SWEEP_ROWS, help="comma-separated")
    parser.add_argument("--sweep-reps", type=int, default=2)
    parser.add_argument("--skip-fastembed", action="store_true")
    parser.add_argument("--skip-job", action="store_true")
    parser.add_argument("--skip-embedder", action="store_true")
    parser.add_argument("--gpu-sample", type=int, default=1000, help="GPU: docs compared fp16 vs fp32")
    parser.add_argument("--gpu-fastembed-docs", type=int, default=2000, help="GPU: docs for fastembed on CUDA")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--workdir",
        default=None,
        help="model, corpus and outputs (default: a new temporary dir); reused models are not rewritten",
    )
    parser.add_argument("--out", default=None, help="write the result JSON here")
    args = parser.parse_args(argv)
    if args.model_path and (args.shape or args.arch):
        parser.error("--model-path takes the shape and arch from the model's config.json: drop --shape/--arch")
    return args


def main(args: argparse.Namespace) -> int:
    gpu = args.device == "gpu"
    config = BenchConfig(
        shape=args.shape or ("e5-large" if gpu else "e5-small"),
        arch=args.arch,
        model_path=args.model_path,
        graph=args.graph,
        docs=args.docs or (20_000 if gpu else 600),
        fastembed_docs=args.fastembed_docs,
        threads=args.threads,
        precision=args.precision,
        device=args.device,
        rss_scale=args.rss_scale,
        shard_rows=args.shard_rows,
        sweep=args.sweep,
        sweep_docs=args.sweep_docs,
        sweep_budgets=args.sweep_budgets,
        sweep_rows=args.sweep_rows,
        sweep_reps=args.sweep_reps,
        skip_fastembed=args.skip_fastembed,
        skip_job=args.skip_job,
        skip_embedder=args.skip_embedder,
        seed=args.seed,
        workdir=args.workdir,
        gpu_sample=args.gpu_sample,
        gpu_fastembed_docs=args.gpu_fastembed_docs,
    )
    try:
        run_benchmark(config, out=args.out, log=lambda line: print(line, flush=True))
    except (ValueError, RuntimeError) as exc:
        print(f"benchmark: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_args()))
