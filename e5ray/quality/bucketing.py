"""Hash partitioning of (key, vector) rows, for joining two outputs within a memory budget.

Rows go to bucket `key_hash(key) % count`; with one bucket they stay in memory, with
more they are spilled to local files, one per bucket, and read back one bucket at a time.
`key_hash` is keyed by a seed and is the same in every process (Python's own str hash is
salted per process), so bucketing and any sampling built on it are reproducible.
"""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np


def key_hash(key: Any, seed: int) -> int:
    """A 64-bit hash of a key that is the same in every process (Python's str hash is not)."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8, key=seed.to_bytes(8, "little", signed=True))
    return int.from_bytes(digest.digest(), "little")


class Buckets:
    """(keys, vectors) of one side split by key hash; in memory for one bucket, else spilled."""

    def __init__(self, count: int, directory: Path | None) -> None:
        self.count = count
        self.files = [open(directory / f"{i}.pkl", "w+b") for i in range(count)] if directory else None
        self.memory: list[list[tuple[list[Any], np.ndarray]]] = [[] for _ in range(count)]

    def add(self, keys: list[Any], vectors: np.ndarray, hashes: np.ndarray) -> None:
        which = hashes % np.uint64(self.count)
        for b in np.unique(which):
            rows = np.flatnonzero(which == b)
            part = ([keys[r] for r in rows], vectors[rows])
            if self.files is None:
                self.memory[int(b)].append(part)
            else:
                pickle.dump(part, self.files[int(b)], protocol=5)

    def read(self, b: int, dim: int) -> tuple[list[Any], np.ndarray]:
        parts = self.memory[b]
        if self.files is not None:
            fh = self.files[b]
            fh.seek(0)
            parts = []
            while True:
                try:
                    parts.append(pickle.load(fh))  # our own temp file, written above
                except EOFError:
                    break
        keys = [k for part in parts for k in part[0]]
        vectors = np.concatenate([p[1] for p in parts]) if parts else np.empty((0, dim), np.float32)
        return keys, vectors

    def close(self) -> None:
        for fh in self.files or []:
            fh.close()


def index_keys(keys: list[Any]) -> tuple[dict[Any, int], int]:
    """key -> first row, and how many rows repeated a key already seen."""
    index: dict[Any, int] = {}
    for row, key in enumerate(keys):
        index.setdefault(key, row)
    return index, len(keys) - len(index)
