"""A reuse index's description (`meta.json`): its buckets, width, rows, and how it was built.

Invariants: `meta.json` is written last, after every bucket file (each written
atomically), so an index whose meta loads is complete; an index of another format or
hash scheme does not load (None), so it is built again rather than misread. The bucket
count is a power of two chosen so that one bucket (hashes and vectors) fits
TARGET_BUCKET_BYTES, which bounds what a build or a lookup holds in memory at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from e5ray.output.content_hash import HASH_BYTES, SCHEME
from e5ray.store.filesystem import filesystem_for, join

INDEX_FORMAT = "e5ray.reuse-index/1"
TARGET_BUCKET_BYTES = 16 << 20  # a bucket the build and a lookup hold in memory at once
MIN_BUCKETS = 8
MAX_BUCKETS = 1 << 16


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
