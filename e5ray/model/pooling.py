"""E5 pooling as plain numpy: mean over real tokens, then L2 normalisation.

Kept apart from the ONNX run so that it can be tested on its own and so that no
model wrapper's own pooling (CLS, or mean without normalisation) leaks into the vectors.
`cls` (the first token's vector, normalised) exists only to extend indexes built by
older tools that pooled that way; it is not the E5 paper's pooling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

# Name of the output that e5ray.model.graph's on-device pooling head adds to GPU models.
POOLED_OUTPUT = "e5_embedding"


def mean_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """Average `hidden` (n, seq, dim) over the positions where `attention_mask` is 1.

    Accumulates in float32 (float64 would not change the result at the 1e-6 level
    and costs twice the memory traffic). A row with no real token is an error: E5
    always has at least the special tokens, so an all-zero mask means a caller bug.
    """
    if hidden.ndim != 3:
        raise ValueError(f"expected token embeddings of shape (batch, seq, dim), got {hidden.shape}")
    mask = attention_mask.astype(np.float32)[:, :, None]
    counts = mask.sum(axis=1)
    if np.any(counts == 0):
        raise ValueError("mean_pool: a row has no real tokens (attention mask all zero)")
    summed: np.ndarray = np.einsum("nsd,nsk->nd", hidden.astype(np.float32, copy=False), mask)
    mean: np.ndarray = summed / counts
    return mean


def l2_normalize(vectors: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Scale each row to unit L2 norm (rows of norm below `eps` are left as they are)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, eps)).astype(np.float32, copy=False)
    return unit


def e5_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The E5 paper's sentence vector: masked mean pooling followed by L2 normalisation."""
    return l2_normalize(mean_pool(hidden, attention_mask))


def cls_pool(hidden: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """The first token's vector of each row ([CLS] / <s>), L2-normalised: legacy pooling."""
    if hidden.ndim != 3:
        raise ValueError(f"expected token embeddings of shape (batch, seq, dim), got {hidden.shape}")
    if hidden.shape[0] and not np.all(np.asarray(attention_mask)[:, 0]):
        raise ValueError("cls_pool: a row's first position is padding; sequences must be left-aligned")
    return l2_normalize(hidden[:, 0, :].astype(np.float32, copy=False))


@dataclass(frozen=True)
class PoolingMode:
    """A pooling function (token states, attention mask) -> sentence vectors, and whether
    its vectors come out L2-normalised (both are recorded in the embedding space)."""

    pool: Callable[[np.ndarray, np.ndarray], np.ndarray]
    normalized: bool


# Pooling modes by the name the embedding space records. E5 is mean-pooled and
# normalised; a new mode is a function (here or in a module of its own) plus one line.
POOLINGS: dict[str, PoolingMode] = {
    "mean": PoolingMode(e5_pool, normalized=True),
    "cls": PoolingMode(cls_pool, normalized=True),  # legacy: extending indexes built that way
}
E5_POOLING = "mean"


def check_pooling(pooling: str) -> str:
    """`pooling`, if it is one e5ray knows; else a UsageError listing the valid ones."""
    if pooling not in POOLINGS:
        from e5ray.errors import UsageError

        raise UsageError(f"unknown pooling {pooling!r}; valid: {', '.join(POOLINGS)}")
    return pooling


def pool(hidden: np.ndarray, attention_mask: np.ndarray, pooling: str = E5_POOLING) -> np.ndarray:
    """Sentence vectors by `pooling` ('mean', the paper's, or legacy 'cls')."""
    return POOLINGS[check_pooling(pooling)].pool(hidden, attention_mask)
