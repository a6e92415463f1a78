"""Node counts before and after onnxruntime's transformer optimiser, for a random-weight model.

Shows whether attention fuses on a graph layout (`e5ray.testing.export.GRAPHS`): on the
export-shaped graph one Attention node per layer appears and every Softmax goes; on the
node-by-node graph they stay. Used by `python -m e5ray.bench fusion-counts` and quoted in BENCHMARKS.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from e5ray.bench.config import DEFAULT_ARCH
from e5ray.testing.shapes import SHAPES


def fusion_counts(
    shape: str, arch: str | None = None, graph: str = "export", use_gpu: bool = False, full_vocab: bool = False
) -> dict[str, Any]:
    """Node counts before and after onnxruntime's transformer optimiser for a random model.

    Unless `full_vocab`, the word table is cut to what the tokenizer needs: it changes
    no node, only the file size (the e5-large table alone is 1 GB).
    """
    from e5ray.model.fusion import optimize_encoder
    from e5ray.testing.export import write_model

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    arch = arch or DEFAULT_ARCH.get(shape, "xlmr")
    encoder = SHAPES[shape] if full_vocab else replace(SHAPES[shape], vocab_size=SHAPES["tiny"].vocab_size)
    with tempfile.TemporaryDirectory(prefix="e5ray-fusion-") as tmp:
        write_model(Path(tmp), graph=graph, arch=arch, shape=encoder)
        _, report = optimize_encoder(Path(tmp) / "model.onnx", use_gpu=use_gpu)
    return {"shape": shape, "arch": arch, "graph": graph, "use_gpu": use_gpu, **asdict(report)}


def fusion_speed(shape: str, docs: int = 300, rounds: int = 3, threads: int | None = None) -> dict[str, Any]:
    """E5Embedder's tokens/s on the CPU for the export graph fused and unfused and the
    node-by-node graph (same weights), in interleaved rounds so that a busy machine slows
    all three alike; best and median of the rounds, and the ratios of the bests."""
    import statistics
    import time

    from e5ray.bench.corpus import make_corpus
    from e5ray.model.embedder import E5Embedder
    from e5ray.testing.export import write_model

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    arch = DEFAULT_ARCH.get(shape, "xlmr")
    encoder = replace(SHAPES[shape], vocab_size=SHAPES["tiny"].vocab_size)
    with tempfile.TemporaryDirectory(prefix="e5ray-fusion-speed-") as tmp:
        variants = {}
        for name, graph, fuse in (
            ("export fused", "export", True),
            ("export unfused", "export", False),
            ("nodes", "nodes", False),
        ):
            model = Path(tmp) / graph
            if not (model / "config.json").is_file():
                write_model(model, graph=graph, arch=arch, shape=encoder, seed=0)
            variants[name] = E5Embedder(
                model=f"e5ray-bench/{shape}", model_path=model, threads=threads, fuse_attention=fuse
            )
        texts = make_corpus(docs, Path(tmp) / "export" / "tokenizer.json", seed=0)
        runs: dict[str, list[float]] = {name: [] for name in variants}
        vectors = {}
        for _ in range(rounds):
            for name, embedder in variants.items():
                t0 = time.perf_counter()
                result = embedder.embed(texts)
                runs[name].append(result.tokens / (time.perf_counter() - t0))
                vectors[name] = result.vectors
    best = {name: max(rates) for name, rates in runs.items()}
    return {
        "shape": shape,
        "docs": docs,
        "rounds": rounds,
        "tokens_per_s": {
            name: {"best": round(best[name], 1), "median": round(statistics.median(rates), 1)}
            for name, rates in runs.items()
        },
        "fused_vs_unfused": round(best["export fused"] / best["export unfused"], 3),
        "fused_vs_nodes": round(best["export fused"] / best["nodes"], 3),
        "min_cosine_fused_vs_nodes": round(float((vectors["export fused"] * vectors["nodes"]).sum(axis=1).min()), 6),
    }
