"""The reuse index: a version's vectors by content hash, partitioned into buckets by hash prefix.

Layout under the output root, for committed version N (`index/v00000N/`):
- `b0000.bin` ... one file per bucket (P buckets, P a power of two; a row's bucket is
  the leading log2(P) bits of its hash): the bucket's distinct hashes, sorted, 16 bytes
  each, then their vectors in the same order (float32, little-endian, `dim` each);
- `meta.json` last: buckets, dim, rows per bucket, the hash scheme, the shards indexed.
  Its presence means every bucket file is complete (each was written atomically), so
  an index is built once per version, and a killed build is simply built again.

Why raw files and not Parquet: a lookup needs exact byte ranges. A bucket's hashes are
one contiguous range (read whole, `16 x rows` bytes), and the vector of the k-th hash
sits at a known offset, so a work unit fetches exactly the vectors it needs, merging
ranges whose gap is under `gap_bytes` into one request (the trade of requests against
bytes, as Parquet readers coalesce column chunks). Parquet would add a page layer whose
boundaries a reader cannot address without decoding.

Memory: the build holds one bucket at a time (spilled per bucket to local files first);
a lookup holds one bucket's hashes at a time plus the vectors it found. No process holds
the whole corpus's hashes. Costs are counted in `ReadStats` (requests and bytes read
from the output), and the README ("Row-level refresh") gives them per corpus size.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from e5ray.output.content_hash import HASH_BYTES, HASH_COLUMN, SCHEME, as_words, bucket_of
from e5ray.output.layout import INDEX_DIR as INDEX_DIR
from e5ray.output.layout import index_path as index_path
from e5ray.store.filesystem import filesystem_for, join, write_atomic

log = logging.getLogger("e5ray")

INDEX_FORMAT = "e5ray.reuse-index/1"
TARGET_BUCKET_BYTES = 16 << 20  # a bucket the build and a lookup hold in memory at once
MIN_BUCKETS = 8
MAX_BUCKETS = 1 << 16
GAP_BYTES = 1 << 20  # merge two vector ranges when fewer bytes than this lie between them


@dataclass
class ReadStats:
    """Requests made to, and bytes read from, the output's previous version."""

    requests: int = 0
    bytes: int = 0
    seconds: float = 0.0

    def add(self, other: ReadStats) -> None:
        self.requests += other.requests
        self.bytes += other.bytes
        self.seconds += other.seconds

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "bytes": self.bytes, "seconds": round(self.seconds, 3)}


@dataclass(frozen=True)
class IndexInfo:
    """What `meta.json` says about one built index."""

    path: str  # relative to the output root
    version: int
    buckets: int
    dim: int
    rows: tuple[int, ...]  # distinct hashes per bucket
    shards: int  # shard files indexed
    format: str = INDEX_FORMAT
    scheme: str = SCHEME
    build: dict[str, Any] = field(default_factory=dict)  # how the build went (requests, bytes, seconds)

    def bucket_path(self, bucket: int) -> str:
        return f"{self.path}/b{bucket:04d}.bin"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows": list(self.rows)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndexInfo:
        return cls(**{**data, "rows": tuple(data["rows"])})


def choose_buckets(rows: int, dim: int) -> int:
    """Buckets (a power of two) so that one bucket's hashes and vectors fit TARGET_BUCKET_BYTES."""
    total = rows * (HASH_BYTES + 4 * dim)
    buckets = MIN_BUCKETS
    while buckets < MAX_BUCKETS and total / buckets > TARGET_BUCKET_BYTES:
        buckets *= 2
    return buckets


class _CountedFile:
    """A read-only file object that counts the reads pyarrow makes through it and their bytes."""

    def __init__(self, fh: Any, stats: ReadStats) -> None:
        self._fh, self._stats = fh, stats

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._stats.requests += 1
        self._stats.bytes += len(data)
        return bytes(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return int(self._fh.seek(offset, whence))

    def tell(self) -> int:
        return int(self._fh.tell())

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return bool(self._fh.closed)

    def close(self) -> None:
        self._fh.close()


def load_index(output_uri: str, path: str, storage_options: dict[str, Any] | None = None) -> IndexInfo | None:
    """The index at `path` (relative to the output root) if it was built completely, else None."""
    fs, root = filesystem_for(output_uri, storage_options)
    try:
        with fs.open(join(root, path, "meta.json"), "rb") as fh:
            data = json.loads(fh.read())
    except FileNotFoundError:
        return None
    info = IndexInfo.from_dict(data)
    return info if info.format == INDEX_FORMAT and info.scheme == SCHEME else None


def build_index(
    output_uri: str,
    version: int,
    shard_paths: Iterable[str],
    dim: int,
    rows_hint: int,
    storage_options: dict[str, Any] | None = None,
) -> IndexInfo:
    """Index the vectors of `shard_paths` (output-relative Parquet files with a content_hash
    column) as version `version`'s index; returns its info.

    Two passes, one bucket in memory at a time: each shard file is streamed by row group
    and its rows appended to local spill files per bucket; then each bucket is read back,
    sorted by hash (duplicates dropped: equal hashes have equal vectors) and uploaded.
    """
    started = time.perf_counter()
    fs, root = filesystem_for(output_uri, storage_options)
    paths = list(shard_paths)
    buckets = choose_buckets(rows_hint, dim)
    stats = ReadStats()
    rel = index_path(version)
    rows: list[int] = []
    with tempfile.TemporaryDirectory(prefix="e5ray-index-") as spill_dir:
        spills = [open(os.path.join(spill_dir, f"{b}.h"), "wb") for b in range(buckets)]
        vec_spills = [open(os.path.join(spill_dir, f"{b}.v"), "wb") for b in range(buckets)]
        try:
            for path in paths:
                if not fs.exists(join(root, path)):
                    # gone (collected, or lost): the refresh embeds that shard anew (e5ray.job.precommit);
                    # the index only holds fewer rows to reuse
                    continue
                with fs.open(join(root, path), "rb") as raw:
                    reader = pq.ParquetFile(_CountedFile(raw, stats))
                    if HASH_COLUMN not in reader.schema_arrow.names:  # an empty shard's file has no hash column
                        continue
                    for group in range(reader.num_row_groups):
                        table = reader.read_row_group(group, columns=[HASH_COLUMN, "embedding"])
                        if table.num_rows == 0:
                            continue
                        hashes = np.frombuffer(table.column(HASH_COLUMN).combine_chunks().buffers()[1], dtype=np.uint8)[
                            : table.num_rows * HASH_BYTES
                        ].reshape(-1, HASH_BYTES)
                        vectors = _vectors(table.column("embedding"), dim)
                        where = bucket_of(as_words(hashes), buckets)
                        order = np.argsort(where, kind="stable")
                        bounds = np.searchsorted(where[order], np.arange(buckets + 1))
                        for b in range(buckets):
                            take = order[bounds[b] : bounds[b + 1]]
                            if len(take):
                                spills[b].write(hashes[take].tobytes())
                                vec_spills[b].write(vectors[take].astype("<f4").tobytes())
        finally:
            for fh in spills + vec_spills:
                fh.close()
        for b in range(buckets):
            hashes = np.fromfile(os.path.join(spill_dir, f"{b}.h"), dtype=np.uint8).reshape(-1, HASH_BYTES)
            vectors = np.fromfile(os.path.join(spill_dir, f"{b}.v"), dtype="<f4").reshape(-1, dim)
            words = as_words(hashes)
            order = np.lexsort((words[:, 1], words[:, 0]))
            words, hashes, vectors = words[order], hashes[order], vectors[order]
            if len(words):
                keep = np.ones(len(words), dtype=bool)
                keep[1:] = np.any(words[1:] != words[:-1], axis=1)
                hashes, vectors = hashes[keep], vectors[keep]
            rows.append(len(hashes))
            write_atomic(fs, join(root, rel, f"b{b:04d}.bin"), hashes.tobytes() + vectors.tobytes())
    stats.seconds = time.perf_counter() - started
    info = IndexInfo(rel, version, buckets, dim, tuple(rows), len(paths), build=stats.to_dict())
    write_atomic(fs, join(root, rel, "meta.json"), json.dumps(info.to_dict(), indent=1).encode())
    log.info(
        "reuse index %s: %d distinct hashes from %d shard files in %d buckets (%d reads, %.1f MB, %.2f s)",
        rel,
        sum(rows),
        len(paths),
        buckets,
        stats.requests,
        stats.bytes / 1e6,
        stats.seconds,
    )
    return info


def _vectors(column: Any, dim: int) -> np.ndarray:
    chunked = column.combine_chunks()
    return np.asarray(chunked.flatten(), dtype=np.float32).reshape(-1, dim)


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
    row_bytes = 4 * info.dim
    for b in range(info.buckets):
        wanted = order[bounds[b] : bounds[b + 1]]
        count = info.rows[b]
        if not len(wanted) or not count:
            continue
        path = join(root, info.bucket_path(b))
        blob = fs.cat_file(path, start=0, end=count * HASH_BYTES)
        stats.requests += 1
        stats.bytes += len(blob)
        stored = as_words(blob)
        pos = _positions(stored, words[wanted])
        hit = pos >= 0
        if not hit.any():
            continue
        targets, positions = wanted[hit], pos[hit]
        by_pos = np.argsort(positions)
        targets, positions = targets[by_pos], positions[by_pos]
        base = count * HASH_BYTES
        runs = _runs(positions, max(1, gap_bytes // row_bytes))
        starts = [base + int(positions[lo]) * row_bytes for lo, _ in runs]
        ends = [base + (int(positions[hi - 1]) + 1) * row_bytes for _, hi in runs]
        # One call for all of the bucket's ranges: object stores fetch them concurrently.
        blocks = fs.cat_ranges([path] * len(runs), starts, ends)
        for (lo, hi), data in zip(runs, blocks, strict=True):
            stats.requests += 1
            stats.bytes += len(data)
            block = np.frombuffer(data, dtype="<f4").reshape(-1, info.dim)
            out[targets[lo:hi]] = block[positions[lo:hi] - positions[lo]]
        found[targets] = True
    stats.seconds = time.perf_counter() - started
    return found, stats


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
