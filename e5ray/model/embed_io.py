"""The embedder's two data shapes: `Tokenized` (what tokenising yields and a run takes)
and `EmbedResult` (what a run gives back).

Invariants: rows are in input order in both (batching sorts by length inside a run and
restores the order before returning); `Tokenized` rows are documents in truncate mode and
windows otherwise (`windows` says whose), and `EmbedResult.vectors` has one row per
document in truncate and average modes, one per window in chunk mode. Kept apart from the
embedder because workers build `Tokenized` themselves to batch the rows of several units
together (e5ray.worker.shared_batches).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from e5ray.model.windows import Windows


@dataclass
class Tokenized:
    """Token ids of a list of texts (or of their windows), in input order, ready to be batched."""

    ids: list[list[int]]
    lengths: np.ndarray
    truncated: np.ndarray  # bool per row: cut at max_length
    long_text: str = "truncate"
    windows: Windows | None = None  # chunk and average: which document and span each row is

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class EmbedResult:
    """Vectors in input order plus what it cost to make them.

    chunk mode: one row per window, `windows` says whose and where; average mode: one
    row per document, `windows` counts the windows that were embedded."""

    vectors: np.ndarray
    truncated: np.ndarray
    windows: Windows | None = None
    tokens: int = 0
    padded_tokens: int = 0
    seconds: float = 0.0
    batches: int = 0
