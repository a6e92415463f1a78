"""The statistics of the compare report: a distribution's summary (count, min, percentiles,
mean) and Spearman's rank correlation.

Invariants: non-finite values (a nan rho, an id without a cosine) are left out of a
summary, and an empty one is `{"count": 0}`; Spearman is nan where it is not defined
(fewer than 3 values, or a constant side), never a made-up 0. Plain numpy, no I/O.
"""

from __future__ import annotations

import math

import numpy as np


def summarise(values: np.ndarray, percentiles: tuple[int, ...] = (1, 5, 50)) -> dict[str, float]:
    """count, min, the percentiles (p50 named median) and mean of the finite values."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"count": 0}
    p = np.percentile(values, percentiles)
    out = {"count": int(len(values)), "min": float(values.min())}
    out.update({("median" if q == 50 else f"p{q}"): float(v) for q, v in zip(percentiles, p, strict=True)})
    out["mean"] = float(values.mean())
    return out


def spearman(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rho (average ranks for ties); nan when either side is constant or < 3 values."""
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks(x), _ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + ends - 1) / 2.0)[inverse]
