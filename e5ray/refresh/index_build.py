"""Building a version's reuse index from its shard files, one bucket in memory at a time.

Two passes: each shard file is streamed by row group and its (hash, vector) rows appended
to local spill files per bucket; then each bucket is read back, sorted by hash, its
duplicates dropped (equal hashes have equal token ids, so equal vectors) and written
atomically. Invariants: no process holds more than one bucket (nor the corpus's hashes);
`meta.json` is written after every bucket, so a killed build leaves no index that loads
and is simply built again; a shard file that is gone or has no hash column only leaves
fewer rows to reuse (the refresh embeds those rows anew).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from e5ray.output.content_hash import HASH_BYTES, HASH_COLUMN, as_words, bucket_of
from e5ray.output.layout import index_path
from e5ray.refresh.index_meta import IndexInfo, choose_buckets
from e5ray.refresh.read_stats import CountedFile, ReadStats
from e5ray.store.filesystem import filesystem_for, join, write_atomic

log = logging.getLogger("e5ray")


class _BucketSpill:
    """Local files per bucket, hashes and vectors apart: appended to in pass 1, read back whole in pass 2."""

    def __init__(self, directory: str, buckets: int) -> None:
        self.directory, self.buckets = directory, buckets
        self._hashes = [open(self._path(b, "h"), "wb") for b in range(buckets)]
        self._vectors = [open(self._path(b, "v"), "wb") for b in range(buckets)]

    def _path(self, bucket: int, kind: str) -> str:
        return os.path.join(self.directory, f"{bucket}.{kind}")

    def append(self, hashes: np.ndarray, vectors: np.ndarray) -> None:
        """Append rows (hashes (n, HASH_BYTES) uint8, vectors (n, dim)) to their buckets' files."""
        where = bucket_of(as_words(hashes), self.buckets)
        order = np.argsort(where, kind="stable")
        bounds = np.searchsorted(where[order], np.arange(self.buckets + 1))
        for b in range(self.buckets):
            take = order[bounds[b] : bounds[b + 1]]
            if len(take):
                self._hashes[b].write(hashes[take].tobytes())
                self._vectors[b].write(vectors[take].astype("<f4").tobytes())

    def close(self) -> None:
        for fh in self._hashes + self._vectors:
            fh.close()

    def read(self, bucket: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """A closed bucket's rows: hashes (n, HASH_BYTES) and vectors (n, dim)."""
        hashes = np.fromfile(self._path(bucket, "h"), dtype=np.uint8).reshape(-1, HASH_BYTES)
        vectors = np.fromfile(self._path(bucket, "v"), dtype="<f4").reshape(-1, dim)
        return hashes, vectors


def _vectors(column: Any, dim: int) -> np.ndarray:
    chunked = column.combine_chunks()
    return np.asarray(chunked.flatten(), dtype=np.float32).reshape(-1, dim)


def _spill_shard(fs: Any, path: str, dim: int, spill: _BucketSpill, stats: ReadStats) -> None:
    """Pass 1 for one shard file: its rows, row group by row group, into the spill."""
    if not fs.exists(path):
        # gone (collected, or lost): the refresh embeds that shard anew (e5ray.job.precommit);
        # the index only holds fewer rows to reuse
        return
    with fs.open(path, "rb") as raw:
        reader = pq.ParquetFile(CountedFile(raw, stats))
        if HASH_COLUMN not in reader.schema_arrow.names:  # an empty shard's file has no hash column
            return
        for group in range(reader.num_row_groups):
            table = reader.read_row_group(group, columns=[HASH_COLUMN, "embedding"])
            if table.num_rows == 0:
                continue
            hashes = np.frombuffer(table.column(HASH_COLUMN).combine_chunks().buffers()[1], dtype=np.uint8)[
                : table.num_rows * HASH_BYTES
            ].reshape(-1, HASH_BYTES)
            spill.append(hashes, _vectors(table.column("embedding"), dim))


def _distinct_sorted(hashes: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bucket's rows sorted by hash, each hash once (equal hashes have equal vectors)."""
    words = as_words(hashes)
    order = np.lexsort((words[:, 1], words[:, 0]))
    words, hashes, vectors = words[order], hashes[order], vectors[order]
    if len(words):
        keep = np.ones(len(words), dtype=bool)
        keep[1:] = np.any(words[1:] != words[:-1], axis=1)
        hashes, vectors = hashes[keep], vectors[keep]
    return hashes, vectors


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
        spill = _BucketSpill(spill_dir, buckets)
        try:
            for path in paths:
                _spill_shard(fs, join(root, path), dim, spill, stats)
        finally:
            spill.close()
        for b in range(buckets):
            hashes, vectors = _distinct_sorted(*spill.read(b, dim))
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
