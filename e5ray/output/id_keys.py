"""Ids as the cross-shard duplicate check compares them: canonical text and a 64-bit hash.

Invariants: an id's key is its canonical text (the ids of one version share a type:
e5ray.corpus.rows), so equal ids have equal keys in every shard; the hash (blake2b, 8
bytes) is stable across processes, machines and Python versions, because workers write
it into ids files that the driver compares later. An ids file (`IDS_SUFFIX`) holds
(hash, input row, key) per embedded id, in `IDS_SCHEMA`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

IDS_SUFFIX = ".ids.pq"  # not ".parquet": a glob for embedding files must not match it
IDS_SCHEMA = pa.schema([("h", pa.uint64()), ("row", pa.int64()), ("id", pa.string())])


def id_key(id_value: Any) -> str:
    """The canonical text of an id (ids of one version share a type: see e5ray.corpus.rows)."""
    return id_value if isinstance(id_value, str) else str(id_value)


def hash64(keys: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each key (blake2b: stable across processes and Python versions)."""
    out = np.empty(len(keys), dtype=np.uint64)
    for i, key in enumerate(keys):
        out[i] = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
    return out
