"""GPU throughput of e5ray on an export-shaped E5 model: one prepared run, every variant side by side.

    python -m e5ray.bench gpu-bench                      # e5-large, fp16 on CUDA, 100,000 docs, steady >= 30 s
    python -m e5ray.bench gpu-bench --quick              # the same stages, small (about 2 minutes)
    python -m e5ray.bench gpu-bench --device cpu --shape tiny --docs 500   # its own test, no GPU

Measures tokens/s (real, unpadded tokens over wall time) of the embedder on one GPU for every
feeding variant (sessions, I/O binding, chunk sizes) and a token-budget x batch-rows sweep,
then the tuned settings on the whole corpus; parity (cosine against CPU fp32) is checked on
the same texts. Writes gpu_bench.json and gpu_bench.log to --out (default: $OUT when set).
Needs onnxruntime-gpu (CUDA) for --device gpu. The machinery is `e5ray.bench.gpu_throughput`
and `e5ray.bench.feed`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from e5ray.bench.gpu_throughput import GpuBenchConfig, run_gpu_bench
from e5ray.testing.export import GRAPHS
from e5ray.testing.shapes import SHAPES


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(",") if v.strip())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    defaults = GpuBenchConfig()
    parser = argparse.ArgumentParser(
        prog="python -m e5ray.bench gpu-bench",
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--shape", choices=list(SHAPES), default=defaults.shape)
    parser.add_argument("--arch", choices=["bert", "xlmr"], default=None, help="default: the real model's")
    parser.add_argument("--graph", choices=GRAPHS, default=defaults.graph)
    parser.add_argument("--docs", type=int, default=None, help=f"corpus size (default {defaults.docs:,}; quick 20,000)")
    parser.add_argument("--min-steady-s", type=float, default=None, help="default 30 (quick 5, cpu 1)")
    parser.add_argument("--chunk-docs", type=int, default=defaults.chunk_docs)
    parser.add_argument("--token-budget", type=int, default=None, help=f"default {defaults.token_budget} (cpu 512)")
    parser.add_argument("--max-rows", type=int, default=None, help=f"default {defaults.max_rows} (cpu 128)")
    parser.add_argument("--variant-docs", type=int, default=None)
    parser.add_argument("--sweep-docs", type=int, default=None)
    parser.add_argument("--sweep-budgets", type=_ints, default=None, help=f"default {defaults.sweep_budgets}")
    parser.add_argument("--sweep-rows", type=_ints, default=None, help=f"default {defaults.sweep_rows}")
    parser.add_argument("--parity-docs", type=int, default=None)
    parser.add_argument("--time-budget-s", type=float, default=defaults.time_budget_s)
    parser.add_argument("--quick", action="store_true", help="small sizes for a fast end-to-end check")
    parser.add_argument("--workdir", default=defaults.workdir, help="model and caches (reused when present)")
    parser.add_argument("--gpu-id", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.environ.get("OUT"), help="folder for gpu_bench.json and .log")
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> GpuBenchConfig:
    quick, cpu = args.quick, args.device == "cpu"
    docs = args.docs or (20_000 if quick else GpuBenchConfig.docs)
    return GpuBenchConfig(
        device=args.device,
        shape=args.shape,
        arch=args.arch,
        graph=args.graph,
        docs=docs,
        min_steady_s=args.min_steady_s if args.min_steady_s is not None else (1.0 if cpu else 5.0 if quick else 30.0),
        chunk_docs=args.chunk_docs,
        # On the CPU (the benchmark's own test) the CPU's batch shapes: the GPU's would only be slow.
        token_budget=args.token_budget or (512 if cpu else GpuBenchConfig.token_budget),
        max_rows=args.max_rows or (128 if cpu else GpuBenchConfig.max_rows),
        variant_docs=min(docs, args.variant_docs or (5_000 if quick else GpuBenchConfig.variant_docs)),
        sweep_docs=min(docs, args.sweep_docs or (5_000 if quick else GpuBenchConfig.sweep_docs)),
        sweep_budgets=args.sweep_budgets or ((512, 4096) if cpu else GpuBenchConfig.sweep_budgets),
        sweep_rows=args.sweep_rows or ((128, 1024) if cpu else GpuBenchConfig.sweep_rows),
        parity_docs=min(docs, args.parity_docs or (50 if quick else GpuBenchConfig.parity_docs)),
        tokenizer_docs=min(docs, 500 if quick else GpuBenchConfig.tokenizer_docs),
        time_budget_s=args.time_budget_s,
        seed=args.seed,
        gpu_id=args.gpu_id,
        workdir=args.workdir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run_gpu_bench(config_from(args), out_dir=args.out, log=lambda line: print(line, flush=True))
    except (ValueError, RuntimeError) as exc:
        print(f"gpu-bench: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0
