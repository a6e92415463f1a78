"""Ids unique across the shards of one version, checked per hash partition.

Worker side: each finished shard also writes `ids/<name>.ids.pq`, the ids it embedded
(as their canonical string), each with a 64-bit hash and its input row number, sorted
by hash in row groups of `IDS_ROW_GROUP` rows; the entry references it (`ids`) and
records the ids' type (`id_type`).

Driver side, before the commit: the 2^64 hash range is cut into P partitions of at most
`rows_per_partition` expected ids; partition by partition, only the row groups of each
ids file whose hash range overlaps it (Parquet min/max statistics) are read, so one
process never holds more than one partition's ids, whatever the corpus size (a billion
ids with the default is 250 partitions of ~4M). In each partition the rows are ordered
by (hash, shard precedence, row) and every later row with an id already seen is a
duplicate of the first.

Precedence (`--duplicate-ids`):
- `reject` (default): the first shard in source order (by URI) keeps the id; every later
  occurrence is rejected.
- `keep-first`: the occurrence already in the output keeps it: shards carried forward
  from the previous version come first, then the newly embedded ones in source order,
  so a refresh never moves an id's vector to another shard.
- `allow`: no check; ids may repeat across shards.

How a rejection reaches shards whose files are already written: the driver rewrites the
affected shards before committing (`e5ray.output.dupes_rewrite`: new content, so new
content-addressed names, and counts that still reconcile), so the output contract does not
change and readers need no exclusion list. A carried shard whose ids
were rejected for a shard that has since changed or gone is embedded again (its
original output is reused through its completion marker), so the ids come back.

Ids' canonical text and hash: `e5ray.output.id_keys`.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e5ray.output.dupes_rewrite import Drop, apply_drops
from e5ray.output.id_keys import IDS_SCHEMA as _IDS_SCHEMA
from e5ray.output.id_keys import IDS_SUFFIX, hash64, id_key
from e5ray.output.manifest import FileRef, ShardEntry
from e5ray.store.filesystem import OutputDir

__all__ = [
    "DEFAULT_ROWS_PER_PARTITION",
    "IDS_ROW_GROUP",
    "IDS_SUFFIX",
    "POLICIES",
    "Drop",
    "IdCollector",
    "apply_drops",
    "find_duplicates",
    "hash64",
    "id_key",
    "precedence",
    "resolve_duplicates",
    "stale_dedup",
    "write_ids",
]

POLICIES = ("reject", "keep-first", "allow")
# Rows per row group of an ids file; read where each file is written (write_ids, and passed to
# apply_drops), so this one name governs workers' files and rewrites alike.
IDS_ROW_GROUP = 65_536
DEFAULT_ROWS_PER_PARTITION = 4_000_000
_SPAN = 1 << 64


class IdCollector:
    """The ids a worker embedded for one shard, with their input rows."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.rows: list[int] = []

    def add(self, ids: Sequence[Any], rows: Sequence[int]) -> None:
        self.keys.extend(id_key(i) for i in ids)
        self.rows.extend(rows)

    def write(self, path: str | io.IOBase) -> None:
        write_ids(path, self.keys, np.asarray(self.rows, dtype=np.int64))


def write_ids(path: str | io.IOBase, keys: Sequence[str], rows: np.ndarray) -> None:
    hashes = hash64(keys)
    order = np.argsort(hashes, kind="stable")
    table = pa.table(
        {"h": pa.array(hashes[order]), "row": pa.array(rows[order]), "id": pa.array([keys[i] for i in order])},
        schema=_IDS_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=IDS_ROW_GROUP, compression="zstd", write_statistics=True)


def precedence(entries: Sequence[ShardEntry], policy: str, carried_uris: set[str]) -> list[int]:
    """Indexes of `entries` in the order in which they claim ids (first wins)."""
    if policy == "keep-first":
        return sorted(
            range(len(entries)), key=lambda i: (entries[i].source.uri not in carried_uris, _place(entries[i]))
        )
    return sorted(range(len(entries)), key=lambda i: _place(entries[i]))


def _place(entry: ShardEntry) -> tuple[str, int]:
    """A work unit's place in the corpus: its source, then where in the source it starts."""
    return entry.source.uri, entry.unit.start if entry.unit is not None else -1


def _read_ids(output: OutputDir, ref: FileRef, output_format: str) -> list[Any]:
    """The ids of one embedding file (Parquet or JSONL sink)."""
    with output.fs.open(output.path(ref.path), "rb") as fh:
        if output_format == "parquet":
            ids: list[Any] = pq.read_table(fh, columns=["id"]).column("id").to_pylist()
            return ids
        return [json.loads(line)["id"] for line in fh.read().decode("utf-8").splitlines() if line.strip()]


def _partition_rows(output: OutputDir, entry: ShardEntry, lo: int, hi: int, output_format: str) -> pa.Table:
    """The rows of an entry's ids whose hash is in [lo, hi)."""
    if entry.ids is None:  # written before ids files existed: hash the embedding files' ids
        keys = [id_key(v) for ref in entry.files for v in _read_ids(output, ref, output_format)]
        table = pa.table(
            {
                "h": pa.array(hash64(keys)),
                "row": pa.array([-1] * len(keys), pa.int64()),
                "id": pa.array(keys, pa.string()),
            },
            schema=_IDS_SCHEMA,
        )
    else:
        with output.fs.open(output.path(entry.ids.path), "rb") as fh:
            reader = pq.ParquetFile(fh)
            groups = []
            for g in range(reader.num_row_groups):
                stats = reader.metadata.row_group(g).column(0).statistics
                if stats is None or not stats.has_min_max or (stats.max >= lo and stats.min < hi):
                    groups.append(g)
            table = reader.read_row_groups(groups) if groups else _IDS_SCHEMA.empty_table()
    mask = pc.greater_equal(table["h"], pa.scalar(lo, pa.uint64()))
    if hi < _SPAN:
        mask = pc.and_(mask, pc.less(table["h"], pa.scalar(hi, pa.uint64())))
    return table.filter(mask)


def find_duplicates(
    output: OutputDir,
    entries: Sequence[ShardEntry],
    order: list[int],
    output_format: str = "parquet",
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
) -> dict[int, list[Drop]]:
    """Rows to reject, by entry index: every occurrence of an id after the first in `order`."""
    total = sum(e.rows for e in entries)
    partitions = max(1, math.ceil(total / max(1, rows_per_partition)))
    rank = {index: position for position, index in enumerate(order)}
    drops: dict[int, list[Drop]] = {}
    for p in range(partitions):
        lo, hi = p * _SPAN // partitions, (p + 1) * _SPAN // partitions
        hashes, ranks, rows, keys = [], [], [], []
        for index in order:
            if entries[index].rows == 0:
                continue
            part = _partition_rows(output, entries[index], lo, hi, output_format)
            if part.num_rows == 0:
                continue
            hashes.append(part["h"].to_numpy())
            ranks.append(np.full(part.num_rows, rank[index], dtype=np.int64))
            rows.append(part["row"].to_numpy())
            keys.append(part["id"].combine_chunks())
        if not hashes:
            continue
        h, r, w = np.concatenate(hashes), np.concatenate(ranks), np.concatenate(rows)
        ids = pa.concat_arrays(keys)
        idx = np.lexsort((w, r, h))
        h_sorted = h[idx]
        same = np.flatnonzero(h_sorted[1:] == h_sorted[:-1])  # candidates: equal hashes
        if same.size == 0:
            continue
        first_of: dict[tuple[int, str], tuple[int, int]] = {}
        for pos in np.unique(np.concatenate([same, same + 1])):  # few: rows whose hash another row shares
            i = int(idx[pos])
            key = (int(h[i]), str(ids[i].as_py()))
            owner = (int(r[i]), int(w[i]))
            if key not in first_of:
                first_of[key] = owner
                continue
            kept_rank, kept_row = first_of[key]
            if kept_rank == owner[0]:
                continue  # repeated within one shard: the worker rejected those already
            drops.setdefault(order[owner[0]], []).append(
                Drop(owner[1], key[1], entries[order[kept_rank]].source.uri, kept_row)
            )
    return drops


def resolve_duplicates(
    output: OutputDir,
    entries: list[ShardEntry],
    policy: str,
    carried_uris: set[str],
    output_format: str,
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
) -> tuple[list[ShardEntry], int]:
    """The version's entries with cross-shard duplicates rejected under `policy`, and how many."""
    if policy == "allow" or len(entries) < 2:
        return entries, 0
    order = precedence(entries, policy, carried_uris)
    drops = find_duplicates(output, entries, order, output_format, rows_per_partition)
    out = list(entries)
    for index, rows in drops.items():
        out[index] = apply_drops(output, entries[index], rows, output_format, IDS_ROW_GROUP)
    return out, sum(len(rows) for rows in drops.values())


def stale_dedup(entries: Sequence[ShardEntry], unchanged: set[str]) -> list[ShardEntry]:
    """Carried entries whose rejected duplicates were kept by a shard that is no longer
    carried unchanged: they must be embedded again so that those ids come back."""
    return [e for e in entries if any(uri not in unchanged for uri in e.duplicates_of)]
