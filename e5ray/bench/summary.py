"""Derived figures of a CPU run: vector agreement between contestants, int8 against fp32, RSS at scale."""

from __future__ import annotations

from typing import Any

import numpy as np

from e5ray.bench.metrics import cosines, rate, ratio


def _cosine_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    cos = cosines(a, b)
    return {"min": float(cos.min()), "mean": float(cos.mean()), "docs": len(cos)}


def agreement(vectors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Cosines between the contestants' vectors of the same texts (fastembed embeds a prefix of them)."""
    out: dict[str, Any] = {}
    reference = vectors.get("embedder_fp32", vectors.get("embedder"))
    if reference is not None and "fastembed" in vectors:
        fe = vectors["fastembed"]
        out["fastembed_vs_e5ray"] = _cosine_stats(fe, reference[: len(fe)])
    if "embedder" in vectors and "job" in vectors:
        out["job_vs_embedder"] = _cosine_stats(vectors["job"], vectors["embedder"])
    if "embedder_fp32" in vectors:
        out["int8_vs_fp32"] = _cosine_stats(vectors["embedder"], vectors["embedder_fp32"])
    return out


def int8_summary(contestants: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """int8 speed and agreement next to the fp32 embedder of the same run and the int8 ceiling."""
    int8_rate = contestants["embedder"]["tokens_per_s"]
    fp32 = contestants.get("embedder_fp32", {})
    vs_fp32 = result["agreement"].get("int8_vs_fp32", {})
    return {
        "tokens_per_s": int8_rate,
        "fp32_tokens_per_s": fp32.get("tokens_per_s"),
        "speedup_vs_fp32": ratio(int8_rate, fp32.get("tokens_per_s")),
        "mean_cosine_vs_fp32": vs_fp32.get("mean"),
        "min_cosine_vs_fp32": vs_fp32.get("min"),
        "gate_sample_cosine": contestants["embedder"].get("int8_gate_cosine"),
        "quantize_seconds": result["quantize"]["seconds"],
        "quantize_peak_rss_mb": result["quantize"]["peak_rss_mb"],
        "vs_int8_ceiling": ratio(int8_rate, result["ceiling"]["int8"]["tokens_per_s"]),
    }


def rss_scale_summary(
    small: dict[str, Any], large: dict[str, Any], scale: int, embedder_rate: float | None
) -> dict[str, Any]:
    """The job's memory and speed at `scale` times the docs: peak RSS must stay flat in corpus size."""
    tokens_per_s = [rate(small["tokens"], small["seconds"]), rate(large["tokens"], large["seconds"])]
    return {
        "docs": [small["docs"], large["docs"]],
        "scale": scale,
        "job_mb": [small["rss"]["job_mb"], large["rss"]["job_mb"]],
        "job_ratio": ratio(large["rss"]["job_mb"], small["rss"]["job_mb"]),
        "actor_mb": [small["rss"]["actor_mb"], large["rss"]["actor_mb"]],
        "driver_mb": [small["rss"]["driver_mb"], large["rss"]["driver_mb"]],
        "tree_total_mb": [small["rss"]["tree_total_mb"], large["rss"]["tree_total_mb"]],
        "tree_ratio": ratio(large["rss"]["tree_total_mb"], small["rss"]["tree_total_mb"]),
        "tokens_per_s": tokens_per_s,
        "large_job_vs_embedder": ratio(tokens_per_s[1], embedder_rate),
    }
