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
from the output), and docs/refresh.md ("Row-level refresh") gives them per corpus size.

Modules: `index_meta` (meta.json, bucket count, loading), `index_build` (the two-pass
build), `index_lookup` (finding hashes and their vectors), `read_stats` (counting reads);
this module is the index's public face, importable as one.
"""

from __future__ import annotations

from e5ray.output.layout import INDEX_DIR, index_path
from e5ray.refresh.index_build import build_index
from e5ray.refresh.index_lookup import GAP_BYTES, lookup
from e5ray.refresh.index_meta import (
    INDEX_FORMAT,
    MAX_BUCKETS,
    MIN_BUCKETS,
    TARGET_BUCKET_BYTES,
    IndexInfo,
    choose_buckets,
    load_index,
)
from e5ray.refresh.read_stats import ReadStats

__all__ = [
    "GAP_BYTES",
    "INDEX_DIR",
    "INDEX_FORMAT",
    "MAX_BUCKETS",
    "MIN_BUCKETS",
    "TARGET_BUCKET_BYTES",
    "IndexInfo",
    "ReadStats",
    "build_index",
    "choose_buckets",
    "index_path",
    "load_index",
    "lookup",
]
