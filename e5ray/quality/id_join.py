"""The per-id join of two outputs for `e5ray compare`: which keys are in both, in one, or
repeated; the cosine between the two vectors of each common key; and the seeded sample of
common keys whose neighbourhoods are compared afterwards.

Invariants: both sides are hash-partitioned with the same keyed hash, so a key lands in the
same bucket on both sides and buckets are joined one at a time; the bucket count is sized to
the memory budget, and buckets are spilled to a local temp dir only when there is more than
one. The sample is the `sample` common keys of lowest sample hash, so it depends on the seed
only, not on shard order or bucket count; likewise the `worst` lowest cosines.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.quality.bucketing import Buckets, index_keys, key_hash
from e5ray.quality.output_reader import OutputReader

# A sampled common key: (its sample hash, the key, its OLD vector, its NEW vector).
Picked = tuple[int, Any, np.ndarray, np.ndarray]


def bucket_count(old: OutputReader, new: OutputReader, memory_mb: float) -> int:
    """Buckets needed for one bucket of both sides to fit in `memory_mb`."""
    size = (old.size() + new.size()) * 1.5  # file bytes ~ vector bytes; keys and copies: ~1.5x
    return max(1, math.ceil(size / (memory_mb * 2**20)))


class IdJoin:
    """What the join found, accumulated bucket by bucket."""

    def __init__(self, *, dims_match: bool, sample: int, worst: int, seed: int) -> None:
        self.dims_match, self.sample, self.worst, self.seed = dims_match, sample, worst, seed
        self.totals = dict.fromkeys(
            ("old", "new", "common", "only_old", "only_new", "duplicates_old", "duplicates_new"), 0
        )
        self.cosines: list[np.ndarray] = []  # per bucket, the cosine of each common key
        self.worst_keys: list[Any] = []  # per bucket, its `worst` lowest-cosine keys...
        self.worst_cos: list[float] = []  # ...and their cosines
        self.picked: list[Picked] = []

    def add_bucket(self, old: tuple[list[Any], np.ndarray], new: tuple[list[Any], np.ndarray]) -> None:
        """Join one bucket's (keys, vectors) of each side."""
        (okeys, ovecs), (nkeys, nvecs) = old, new
        oindex, odup = index_keys(okeys)
        nindex, ndup = index_keys(nkeys)
        common = [key for key in oindex if key in nindex]
        self._count(len(oindex), len(nindex), len(common), odup, ndup)
        if not common:
            return
        orows = np.array([oindex[key] for key in common])
        nrows = np.array([nindex[key] for key in common])
        if self.dims_match:
            self._add_cosines(common, ovecs[orows], nvecs[nrows])
        self._pick(common, ovecs, orows, nvecs, nrows)

    def _count(self, old: int, new: int, common: int, duplicates_old: int, duplicates_new: int) -> None:
        totals = self.totals
        totals["old"] += old
        totals["new"] += new
        totals["common"] += common
        totals["only_old"] += old - common
        totals["only_new"] += new - common
        totals["duplicates_old"] += duplicates_old
        totals["duplicates_new"] += duplicates_new

    def _add_cosines(self, common: list[Any], old_vectors: np.ndarray, new_vectors: np.ndarray) -> None:
        # In float64: near-identical vectors give cosines near 1, where float32 rounding would show.
        a, c = old_vectors.astype(np.float64), new_vectors.astype(np.float64)
        norms = np.linalg.norm(a, axis=1) * np.linalg.norm(c, axis=1)
        cos = np.divide((a * c).sum(axis=1), norms, out=np.zeros(len(common)), where=norms > 0)
        self.cosines.append(cos)
        low = np.argsort(cos, kind="stable")[: self.worst]
        self.worst_keys += [common[i] for i in low]
        self.worst_cos += [float(cos[i]) for i in low]

    def _pick(
        self, common: list[Any], ovecs: np.ndarray, orows: np.ndarray, nvecs: np.ndarray, nrows: np.ndarray
    ) -> None:
        """Keep the `sample` common keys of lowest sample hash seen so far (vectors copied out
        of the bucket, which is dropped after the join)."""
        hashes = [key_hash(("sample", key), self.seed) for key in common]
        for i in np.argsort(hashes, kind="stable")[: self.sample]:
            self.picked.append((hashes[i], common[i], ovecs[orows[i]].copy(), nvecs[nrows[i]].copy()))
        self.picked = sorted(self.picked, key=lambda p: p[0])[: self.sample]


def join_by_id(
    old: OutputReader, new: OutputReader, count: int, *, batch_rows: int, seed: int, sample: int, worst: int
) -> IdJoin:
    """Partition both outputs into `count` buckets by key hash, then join bucket by bucket."""
    joined = IdJoin(dims_match=old.dim == new.dim, sample=sample, worst=worst, seed=seed)
    with tempfile.TemporaryDirectory(prefix="e5ray-compare-") as tmp:
        sides = [
            _partition(output, count, Path(tmp) / name, batch_rows, seed)
            for name, output in (("old", old), ("new", new))
        ]
        for b in range(count):
            joined.add_bucket(sides[0].read(b, old.dim), sides[1].read(b, new.dim))
        for side in sides:
            side.close()
    return joined


def _partition(output: OutputReader, count: int, spill: Path, batch_rows: int, seed: int) -> Buckets:
    """Stream one output into `count` buckets (spilled under `spill` when more than one),
    counting its rows on the way."""
    directory = None
    if count > 1:
        directory = spill
        directory.mkdir()
    buckets = Buckets(count, directory)
    for keys, vectors in output.batches(batch_rows):
        output.rows += len(keys)
        hashes = np.fromiter((key_hash(k, seed) for k in keys), dtype=np.uint64, count=len(keys))
        buckets.add(keys, vectors, hashes)
    return buckets
