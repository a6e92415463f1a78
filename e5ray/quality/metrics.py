"""Retrieval metrics and paired bootstrap intervals, in plain numpy (no I/O).

Conventions (the same as trec_eval and BEIR's evaluation, so numbers can be checked
against them):
- A ranking is a (queries, k) array of passage indices, best first. Equal scores are
  ordered by passage index, so a ranking is a pure function of the scores.
- Judgments are per query a mapping passage index -> graded relevance; a grade > 0 is
  relevant, a grade <= 0 is judged not relevant (the same as unjudged).
- recall@k: relevant passages in the top k / relevant passages of the query.
- MRR@k: 1 / rank of the first relevant passage in the top k, 0 when there is none.
- nDCG@k: DCG = sum over ranks r = 1..k of grade / log2(r + 1) (linear gain, as
  trec_eval's ndcg_cut), divided by the DCG of the ideal ordering of the query's grades.
Every metric is returned per query, so that differences between two variants can be
resampled over queries (`paired_bootstrap`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

Judgments = Sequence[Mapping[int, float]]

# The metrics `e5ray eval` reports, in table order.
METRICS = ("recall@1", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def top_k(scores: np.ndarray, k: int, chunk: int = 256) -> np.ndarray:
    """Indices of the `k` highest scores of each row, best first; ties go to the lower index.

    Works on query chunks with a partial sort, so memory stays at `chunk` rows of scores
    and the cost at O(passages) per query plus the sort of the few candidates."""
    if scores.ndim != 2:
        raise ValueError(f"scores must be (queries, passages), got shape {scores.shape}")
    n_q, n_p = scores.shape
    k = min(k, n_p)
    if k < 1:
        raise ValueError(f"k must be >= 1 and the pool non-empty, got k={k}, {n_p} passages")
    out = np.empty((n_q, k), dtype=np.int64)
    for start in range(0, n_q, chunk):
        block = scores[start : start + chunk]
        # The k-th largest score per row; every index scoring at least that is a candidate,
        # which keeps ties at the boundary exact (argpartition alone would pick arbitrarily).
        kth = -np.partition(-block, k - 1, axis=1)[:, k - 1 : k]
        for row, (values, threshold) in enumerate(zip(block, kth, strict=True)):
            candidates = np.flatnonzero(values >= threshold[0])
            order = np.lexsort((candidates, -values[candidates]))
            out[start + row] = candidates[order[:k]]
    return out


def gains(ranking: np.ndarray, judgments: Judgments) -> np.ndarray:
    """The graded relevance of each ranked passage, shape of `ranking` (0 where unjudged)."""
    if len(judgments) != len(ranking):
        raise ValueError(f"{len(ranking)} rankings but judgments for {len(judgments)} queries")
    out = np.zeros(ranking.shape, dtype=np.float64)
    for q, (row, judged) in enumerate(zip(ranking, judgments, strict=True)):
        out[q] = [judged.get(int(p), 0.0) for p in row]
    return out


def relevant_counts(judgments: Judgments) -> np.ndarray:
    return np.array([sum(1 for g in j.values() if g > 0) for j in judgments], dtype=np.float64)


def recall_at(ranked_gains: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query: relevant passages among the first k / all relevant passages (0 if none)."""
    hits = (ranked_gains[:, :k] > 0).sum(axis=1)
    recall: np.ndarray = np.divide(hits, n_relevant, out=np.zeros(len(hits)), where=n_relevant > 0)
    return recall


def mrr_at(ranked_gains: np.ndarray, k: int) -> np.ndarray:
    """Per query: 1 / rank of the first relevant passage within the first k, else 0."""
    relevant = ranked_gains[:, :k] > 0
    first = relevant.argmax(axis=1)
    return np.where(relevant.any(axis=1), 1.0 / (first + 1), 0.0)


def dcg(grades: np.ndarray, k: int) -> np.ndarray:
    """Per row: sum of grade / log2(rank + 1) over the first k ranks (negative grades count 0)."""
    head = np.clip(grades[:, :k], 0.0, None)
    discounts = 1.0 / np.log2(np.arange(2, head.shape[1] + 2))
    total: np.ndarray = head @ discounts
    return total


def ndcg_at(ranked_gains: np.ndarray, judgments: Judgments, k: int) -> np.ndarray:
    """Per query: DCG@k of the ranking / DCG@k of the ideal ranking of its grades (0 if none relevant)."""
    ideal = np.zeros((len(judgments), k), dtype=np.float64)
    for q, judged in enumerate(judgments):
        best = sorted((g for g in judged.values() if g > 0), reverse=True)[:k]
        ideal[q, : len(best)] = best
    ideal_dcg = dcg(ideal, k)
    ndcg: np.ndarray = np.divide(dcg(ranked_gains, k), ideal_dcg, out=np.zeros(len(judgments)), where=ideal_dcg > 0)
    return ndcg


def per_query_metrics(ranking: np.ndarray, judgments: Judgments) -> dict[str, np.ndarray]:
    """METRICS -> per-query values for a ranking of depth >= 10 (or the whole pool if smaller)."""
    ranked = gains(ranking, judgments)
    n_relevant = relevant_counts(judgments)
    return {
        "recall@1": recall_at(ranked, n_relevant, 1),
        "recall@5": recall_at(ranked, n_relevant, 5),
        "recall@10": recall_at(ranked, n_relevant, 10),
        "mrr@10": mrr_at(ranked, 10),
        "ndcg@10": ndcg_at(ranked, judgments, 10),
    }


def bootstrap_indices(n: int, resamples: int = 1000, seed: int = 0) -> np.ndarray:
    """(resamples, n) query indices drawn with replacement; the same for every metric and variant,
    so all intervals of one report come from one set of resamples."""
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one query and one resample, got n={n}, resamples={resamples}")
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def interval(values: np.ndarray, indices: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` over the resamples `indices`."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    means = values[indices].mean(axis=1)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(means, [tail, 100.0 - tail])
    return float(low), float(high)


def paired_bootstrap(
    base: np.ndarray, other: np.ndarray, indices: np.ndarray, confidence: float = 0.95
) -> tuple[float, float, float]:
    """(mean of other - base, interval low, interval high) over the same resampled queries.

    Paired: each resample draws queries and takes both variants' values on those queries,
    so the interval reflects the per-query differences, not the spread of either variant."""
    if base.shape != other.shape:
        raise ValueError(f"paired values need one value per query on both sides: {base.shape} vs {other.shape}")
    diff = np.asarray(other, dtype=np.float64) - np.asarray(base, dtype=np.float64)
    low, high = interval(diff, indices, confidence)
    return float(diff.mean()), low, high
