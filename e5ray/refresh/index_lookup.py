"""Looking hashes up in a reuse index: exactly the byte ranges needed, few requests.

Per bucket that holds any wanted hash: one request for the bucket's sorted hashes (16
bytes each), then the wanted vectors, which sit at known offsets after them; runs of
wanted vectors closer than `gap_bytes` are merged into one range (the trade of requests
against bytes, as Parquet readers coalesce column chunks), and all of a bucket's ranges
go in one call so that an object store fetches them concurrently. Invariants: a lookup
holds one bucket's hashes at a time plus the vectors it found; a hash absent from the
index is reported as not found, never guessed; every request and byte is counted.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from e5ray.output.content_hash import HASH_BYTES, as_words, bucket_of
from e5ray.refresh.index_meta import IndexInfo
from e5ray.refresh.read_stats import ReadStats
from e5ray.store.filesystem import filesystem_for, join

GAP_BYTES = 1 << 20  # merge two vector ranges when fewer bytes than this lie between them


def lookup(
    output_uri: str,
    info: IndexInfo,
    hashes: list[bytes],
    out: np.ndarray,
    storage_options: dict[str, Any] | None = None,
    gap_bytes: int = GAP_BYTES,
) -> tuple[np.ndarray, ReadStats]:
    """Find `hashes` (distinct) in the index; the vector of each found hash goes to the same
    row of `out` (shape (len(hashes), dim)). Returns the found mask and what was read.

    Per bucket that holds any of the hashes: one request for its sorted hashes, then one
    request per run of wanted vectors (runs closer than `gap_bytes` are merged).
    """
    started = time.perf_counter()
    stats = ReadStats()
    found = np.zeros(len(hashes), dtype=bool)
    if not hashes:
        return found, stats
    fs, root = filesystem_for(output_uri, storage_options)
    words = as_words(b"".join(hashes))
    where = bucket_of(words, info.buckets)
    order = np.argsort(where, kind="stable")
    bounds = np.searchsorted(where[order], np.arange(info.buckets + 1))
    for b in range(info.buckets):
        wanted = order[bounds[b] : bounds[b + 1]]
        count = info.rows[b]
        if not len(wanted) or not count:
            continue
        path = join(root, info.bucket_path(b))
        blob = fs.cat_file(path, start=0, end=count * HASH_BYTES)
        stats.requests += 1
        stats.bytes += len(blob)
        pos = _positions(as_words(blob), words[wanted])
        hit = pos >= 0
        if not hit.any():
            continue
        targets = _read_vectors(fs, path, count, info.dim, wanted[hit], pos[hit], gap_bytes, out, stats)
        found[targets] = True
    stats.seconds = time.perf_counter() - started
    return found, stats


def _read_vectors(
    fs: Any,
    path: str,
    count: int,
    dim: int,
    targets: np.ndarray,
    positions: np.ndarray,
    gap_bytes: int,
    out: np.ndarray,
    stats: ReadStats,
) -> np.ndarray:
    """Copy the vectors at `positions` of a bucket of `count` hashes into `out[targets]`,
    in merged ranges; returns the targets filled."""
    by_pos = np.argsort(positions)
    targets, positions = targets[by_pos], positions[by_pos]
    row_bytes = 4 * dim
    base = count * HASH_BYTES
    runs = _runs(positions, max(1, gap_bytes // row_bytes))
    starts = [base + int(positions[lo]) * row_bytes for lo, _ in runs]
    ends = [base + (int(positions[hi - 1]) + 1) * row_bytes for _, hi in runs]
    # One call for all of the bucket's ranges: object stores fetch them concurrently.
    blocks = fs.cat_ranges([path] * len(runs), starts, ends)
    for (lo, hi), data in zip(runs, blocks, strict=True):
        stats.requests += 1
        stats.bytes += len(data)
        block = np.frombuffer(data, dtype="<f4").reshape(-1, dim)
        out[targets[lo:hi]] = block[positions[lo:hi] - positions[lo]]
    return targets


def _positions(stored: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Index in `stored` (sorted (n, 2) words) of each query row, -1 where absent."""
    if not len(stored):
        return np.full(len(queries), -1, dtype=np.int64)
    left = np.searchsorted(stored[:, 0], queries[:, 0], side="left")
    right = np.searchsorted(stored[:, 0], queries[:, 0], side="right")
    pos = np.full(len(queries), -1, dtype=np.int64)
    single = np.nonzero(right - left == 1)[0]  # the usual case: one stored hash with these leading 8 bytes
    match = stored[left[single], 1] == queries[single, 1]
    pos[single[match]] = left[single[match]]
    for i in np.nonzero(right - left > 1)[0]:  # several: compare the trailing 8 bytes one by one
        for j in range(left[i], right[i]):
            if stored[j, 1] == queries[i, 1]:
                pos[i] = j
                break
    return pos


def _runs(positions: np.ndarray, max_gap_rows: int) -> list[tuple[int, int]]:
    """[lo, hi) slices of sorted `positions` whose neighbours lie within `max_gap_rows`."""
    if not len(positions):
        return []
    breaks = np.nonzero(np.diff(positions) > max_gap_rows)[0] + 1
    edges = [0, *breaks.tolist(), len(positions)]
    return list(zip(edges[:-1], edges[1:], strict=True))
