"""The GPU benchmark: fp16 E5Embedder on one GPU, vectors against fp32 on the GPU, tokens/s next to the peak."""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.bench.ceiling import H100_DENSE_FP16_FLOPS, ceiling, flops_formula, flops_per_token
from e5ray.bench.config import PREFIX, WARMUP_DOCS, BenchConfig
from e5ray.bench.corpus import fixed_batch_padded_tokens, length_stats, make_corpus, token_lengths
from e5ray.bench.metrics import cosines, rate, ratio, share
from e5ray.bench.model import BenchModel, prepare_model
from e5ray.bench.monitor import machine_info


def run_gpu_benchmark(cfg: BenchConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """fp16 E5Embedder on one GPU: vectors against fp32 on the GPU, tokens/s next to the ceiling."""
    from e5ray.model.embedder import E5Embedder, require_cuda

    require_cuda()  # before writing a 2 GB model: fail fast on a machine without CUDA
    started = time.perf_counter()
    workdir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="e5ray-bench-gpu-"))
    workdir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"config": asdict(cfg), "machine": machine_info(), "workdir": str(workdir)}
    result["machine"]["gpu"] = _gpu_name()
    log(f"[setup] model {cfg.model_path or f'{cfg.shape} ({cfg.resolved_arch()})'}; work files in {workdir}")
    model = prepare_model(cfg, workdir)
    result["model"] = model.info
    shape, tokenizer_path, model_dir, name = model.shape, model.tokenizer_path, model.directory, model.name
    t0 = time.perf_counter()
    texts = make_corpus(cfg.docs, tokenizer_path, seed=cfg.seed)
    lengths = token_lengths(tokenizer_path, texts)
    result["corpus"] = {"docs": cfg.docs, "stats": length_stats(lengths), "seconds": round(time.perf_counter() - t0, 2)}
    seq_len = result["corpus"]["stats"]["token_weighted_mean"]
    fpt = flops_per_token(shape, seq_len)
    result["ceiling"] = {
        "peak_flops": H100_DENSE_FP16_FLOPS,
        "note": "H100/H200 SXM dense fp16 tensor-core peak",
        "seq_len": seq_len,
        "flops_per_token": fpt,
        "formula": flops_formula(shape, seq_len),
        "tokens_per_s": round(ceiling(shape, seq_len, H100_DENSE_FP16_FLOPS), 1),
    }
    log("[gpu] fp16 E5Embedder (converting the model to fp16 once)")
    t0 = time.perf_counter()
    fp16 = E5Embedder(name, model_path=model_dir, device="gpu", precision="fp16")
    load16 = time.perf_counter() - t0
    fp16.embed(texts[:256])  # warm-up: CUDA context, cuBLAS handles, the arena
    t0 = time.perf_counter()
    run16 = fp16.embed(texts, "passage")
    seconds = time.perf_counter() - t0
    sample = min(cfg.gpu_sample, len(texts))
    sample_vectors16 = run16.vectors[:sample].copy()
    result["fp16"] = {
        "docs": len(texts),
        "seconds": seconds,
        "run_seconds": run16.seconds,
        "tokens": run16.tokens,
        "padded_tokens": run16.padded_tokens,
        "padding_share": share(run16.tokens, run16.padded_tokens),
        "batches": run16.batches,
        "tokens_per_s": rate(run16.tokens, seconds),
        "load_seconds": round(load16, 2),
        "token_budget": fp16.token_budget,
        "max_batch_rows": fp16.max_batch_rows,
    }
    del fp16, run16

    log(f"[gpu] fp32 E5Embedder on a {sample}-doc sample for agreement")
    fp32 = E5Embedder(name, model_path=model_dir, device="gpu", precision="fp32")
    fp32.embed(texts[:64])
    t0 = time.perf_counter()
    run32 = fp32.embed(texts[:sample], "passage")
    seconds32 = time.perf_counter() - t0
    cos = cosines(sample_vectors16, run32.vectors)
    result["fp32_sample"] = {"docs": sample, "tokens_per_s": rate(run32.tokens, seconds32)}
    result["agreement"] = {
        "fp16_vs_fp32": {
            "min": float(cos.min()),
            "mean": float(cos.mean()),
            "docs": sample,
            "goal_min": 0.999,
            "met": bool(cos.min() >= 0.999),
        }
    }
    del fp32, run32

    if not cfg.skip_fastembed:
        result["fastembed"] = _gpu_fastembed(
            model, texts[: cfg.gpu_fastembed_docs], lengths[: cfg.gpu_fastembed_docs], log
        )
    rate16 = result["fp16"]["tokens_per_s"]
    result["ratios"] = {
        "fp16_vs_ceiling": ratio(rate16, result["ceiling"]["tokens_per_s"]),
        "fp16_vs_fastembed": ratio(rate16, (result.get("fastembed") or {}).get("tokens_per_s")),
    }
    result["goals"] = {
        "tokens_per_s": {"value": rate16, "goal": ">= 250000", "met": rate16 >= 250_000},
        "fp16_min_cosine": {"value": float(cos.min()), "goal": ">= 0.999", "met": bool(cos.min() >= 0.999)},
    }
    result["seconds_total"] = round(time.perf_counter() - started, 1)
    return result


def _gpu_name() -> str | None:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=20
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _gpu_fastembed(
    model: BenchModel,
    texts: list[str],
    lengths: np.ndarray,
    log: Callable[[str], None],
) -> dict[str, Any] | None:
    """Plain fastembed (fp32 model, batch 256, input order) on CUDA, for the ratio; optional."""
    log(f"[gpu] fastembed with CUDAExecutionProvider on {len(texts)} docs")
    try:
        from fastembed import TextEmbedding
        from fastembed.common.model_description import ModelSource, PoolingType

        name = f"{model.name}-gpu"
        TextEmbedding.add_custom_model(
            model=name,
            pooling=PoolingType.MEAN,
            normalization=True,
            sources=ModelSource(hf="e5ray-bench/none"),
            dim=model.shape.hidden,
            model_file=model.onnx_file,
        )
        fastembed = TextEmbedding(
            model_name=name,
            specific_model_path=str(model.directory),
            local_files_only=True,
            providers=["CUDAExecutionProvider"],
        )
        prefixed = [PREFIX + t for t in texts]
        list(fastembed.embed(prefixed[:WARMUP_DOCS]))
        t0 = time.perf_counter()
        list(fastembed.embed(prefixed))
        seconds = time.perf_counter() - t0
    except Exception as exc:  # optional contestant: report why it did not run
        return {"error": f"{type(exc).__name__}: {exc}"[:500]}
    tokens = int(lengths.sum())
    padded = fixed_batch_padded_tokens(lengths)
    return {
        "docs": len(texts),
        "seconds": seconds,
        "tokens": tokens,
        "padded_tokens": padded,
        "padding_share": share(tokens, padded),
        "tokens_per_s": rate(tokens, seconds),
    }
