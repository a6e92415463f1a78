"""Length-sorted, token-budget micro-batches.

Padding is the largest waste in CPU inference on real corpora: a batch costs
`rows x longest row`, so mixing a 500-token document with short ones makes every
short one pay for 500. Sorting by length and cutting batches by a budget of padded
tokens keeps padding small and the working set cache-sized, while keeping whole
batches for the GEMMs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Positions (into the caller's list) of the rows in one batch, and its padded length."""

    indices: np.ndarray
    seq_len: int

    @property
    def padded_tokens(self) -> int:
        return int(len(self.indices) * self.seq_len)


def plan_batches(lengths: np.ndarray | list[int], token_budget: int, max_rows: int = 256) -> list[Batch]:
    """Cut rows into batches of similar length whose padded size fits `token_budget`.

    Rows are ordered by length (stable, so equal lengths keep input order); a batch
    grows while `rows x longest <= token_budget` and rows <= `max_rows`. A single row
    longer than the budget still gets a batch of its own. Returns batches in ascending
    length order; callers restore input order through `Batch.indices`.
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be >= 1, got {token_budget}")
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches: list[Batch] = []
    start = 0
    n = len(order)
    while start < n:
        end = start + 1
        # Lengths ascend, so the newest row is always the longest in the batch.
        while end < n and end - start < max_rows and (end - start + 1) * lengths[order[end]] <= token_budget:
            end += 1
        idx = order[start:end]
        batches.append(Batch(indices=idx, seq_len=int(lengths[idx[-1]])))
        start = end
    return batches
