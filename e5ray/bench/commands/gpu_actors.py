"""One GPU, the job's own embedding path: one, two and three actors per GPU, side by side.

    python -m e5ray.bench gpu-actors                               # e5-large export-shaped, fp16, 100,000 docs
    python -m e5ray.bench gpu-actors --device cpu --shape tiny --docs 400   # its own test, no GPU

Each "actor" is a process that does what a job actor does with its share of the corpus:
build `E5Embedder` with the job's defaults for the device, then, chunk after chunk of the
job's default `chunk_rows`, tokenise inline and embed (`E5Embedder.embed`, what the worker
calls). Chunks are dealt to the processes in turn, all start together after loading, and
tokens/s is the real (unpadded) tokens of the corpus over the wall time until the last one
ends; every row embeds the whole corpus (the same tokens). The first row is the job's GPU
settings before `gpu-bench` was run (2,048-row chunks, 65,536 x 1,024 batches, one actor per
GPU). Ray itself is not involved (its actor start-up is paid once per run), so this imports
no Ray; writes to $OUT/gpu_actors.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from e5ray.config import DEFAULT_CHUNK_ROWS

Device = Literal["cpu", "gpu"]


def _actor(
    model_dir: str, device: Device, embed: dict[str, Any], chunk_rows: int, texts: list[str], start: Any, out: Any
) -> None:
    from e5ray.model.embedder import E5Embedder

    if device == "gpu":
        import torch  # noqa: F401  (its CUDA wheels bring the libraries onnxruntime-gpu links to)
    embedder = E5Embedder(model="e5ray-bench/gpu-actors", model_path=model_dir, device=device, **embed)
    embedder.embed(texts[:64])  # warm-up: kernels chosen, memory arena grown
    start.wait()
    t0 = time.perf_counter()
    tokens = padded = 0
    for i in range(0, len(texts), chunk_rows):
        result = embedder.embed(texts[i : i + chunk_rows])
        tokens, padded = tokens + result.tokens, padded + result.padded_tokens
    out.put({"tokens": tokens, "padded": padded, "busy_s": time.perf_counter() - t0, "end": time.time()})


def _run(
    model_dir: Path, device: Device, texts: list[str], actors: int, chunk_rows: int, embed: dict[str, Any]
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(actors + 1), ctx.Queue()
    chunks = [texts[i : i + chunk_rows] for i in range(0, len(texts), chunk_rows)]
    shares = [[t for chunk in chunks[k::actors] for t in chunk] for k in range(actors)]
    procs = [
        ctx.Process(target=_actor, args=(str(model_dir), device, embed, chunk_rows, s, start, out)) for s in shares
    ]
    for p in procs:
        p.start()
    start.wait(timeout=600)
    t0 = time.time()
    results = [out.get(timeout=1200) for _ in procs]
    for p in procs:
        p.join()
    wall = max(r["end"] for r in results) - t0
    tokens, padded = sum(r["tokens"] for r in results), sum(r["padded"] for r in results)
    return {
        "actors": actors,
        "chunk_rows": chunk_rows,
        **embed,
        "docs": len(texts),
        "tokens": tokens,
        "seconds": round(wall, 3),
        "tokens_per_s": round(tokens / wall, 1),
        "padding_share": round(1 - tokens / padded, 4),
        "busy_s": [round(r["busy_s"], 3) for r in results],
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m e5ray.bench gpu-actors", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument("--device", choices=["gpu", "cpu"], default="gpu")
    parser.add_argument("--shape", default="e5-large")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--workdir", default="/tmp/e5ray-gpu-bench")
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    return parser.parse_args(argv)


def prepare(args: argparse.Namespace) -> tuple[Path, list[str]]:
    """The export-shaped model (written once under --workdir) and the corpus."""
    from e5ray.bench.config import DEFAULT_ARCH
    from e5ray.bench.corpus import make_corpus
    from e5ray.model.embedder import E5Embedder
    from e5ray.testing.export import write_model

    if args.device == "gpu":
        import torch  # noqa: F401
    arch = DEFAULT_ARCH[args.shape]
    model_dir = Path(args.workdir) / f"model-export-{arch}-{args.shape}"
    if not (model_dir / "config.json").is_file():
        write_model(model_dir, graph="export", arch=arch, shape=args.shape, seed=0)
    first = E5Embedder(model="e5ray-bench/gpu-actors", model_path=model_dir, device=args.device)  # caches the copy
    texts = make_corpus(args.docs, first.files.tokenizer_path, seed=0)
    del first
    return model_dir, texts


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir, texts = prepare(args)
    new_chunk = DEFAULT_CHUNK_ROWS[args.device]
    before = {"token_budget": 65536, "max_batch_rows": 1024}
    rows = [("before: 2,048-row chunks, 65,536 x 1,024 batches, 1 actor", 1, 2048, before)]
    rows += [(f"defaults, {n} actor{'s' if n > 1 else ''} per GPU", n, new_chunk, {}) for n in (1, 2, 3)]
    if args.device == "cpu":
        rows[0] = ("before (CPU: the defaults)", 1, 2048, {})
    report: dict[str, Any] = {"device": args.device, "shape": args.shape, "docs": args.docs, "runs": {}}
    for label, actors, chunk, embed in rows:
        report["runs"][label] = _run(model_dir, args.device, texts, actors, chunk, embed)
        print(f"{label}: {report['runs'][label]}", flush=True)
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_actors.json").write_text(json.dumps(report, indent=1))
    return 0
