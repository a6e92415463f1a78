"""Small arithmetic shared by the CPU and GPU benchmarks: rates, ratios, padding, cosines, goals."""

from __future__ import annotations

from typing import Any

import numpy as np

GOALS = {
    "job_vs_fastembed": (">=", 5.0),
    "job_vs_embedder": (">=", 0.85),
    "job_vs_embedder_at_scale": (">=", 0.85),  # the rss-scale run: fixed start-up costs amortised
    "embedder_vs_ceiling": (">=", 0.6),
    "padding_share": ("<=", 0.10),
    "job_rss_ratio": ("<=", 1.2),
}


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return np.sum(a * b, axis=1)


def rate(tokens: int, seconds: float) -> float:
    return round(tokens / seconds, 1) if seconds > 0 else 0.0


def share(tokens: int, padded: int) -> float:
    return round(1.0 - tokens / padded, 4) if padded else 0.0


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def evaluate_goals(values: dict[str, Any]) -> dict[str, Any]:
    goals = {}
    for name, (op, target) in GOALS.items():
        value = values.get(name)
        met = None if value is None else (value >= target if op == ">=" else value <= target)
        goals[name] = {"value": value, "goal": f"{op} {target}", "met": met}
    return goals
