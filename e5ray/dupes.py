"""Ids unique across the shards of one version, checked per hash partition.

Worker side: each finished shard also writes `<name>.ids.pq`, the ids it embedded
(as their canonical string), each with a 64-bit hash and its input row number, sorted
by hash in row groups of `IDS_ROW_GROUP` rows; the entry references it (`ids`).

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
affected shards before committing (new content, so new content-addressed names): the
embedding file without the rejected rows, the rejects file with one more line per row
naming the shard and row that kept the id, the ids file without them. The entry's counts
change accordingly (`rows + rejected == input_rows` still holds, `duplicates` counts
these rows, `duplicates_of` names the shards that kept them). So the output contract does
not change: every file holds exactly the rows the manifest counts, and readers need no
exclusion list. The rewrite is a function of the version's shards, so a run killed
after it and before the commit writes the same files again. A carried shard whose ids
were rejected for a shard that has since changed or gone is embedded again (its
original output is reused through its completion marker), so the ids come back.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

from e5ray.storage import join, sha256_of, upload_atomic, write_atomic

POLICIES = ("reject", "keep-first", "allow")
IDS_SUFFIX = ".ids.pq"  # not ".parquet": a glob for embedding files must not match it
IDS_ROW_GROUP = 65_536
DEFAULT_ROWS_PER_PARTITION = 4_000_000
_IDS_SCHEMA = pa.schema([("h", pa.uint64()), ("row", pa.int64()), ("id", pa.string())])
_SPAN = 1 << 64


def id_key(id_value: Any) -> str:
    """The canonical text of an id (ids of one version share a type: see e5ray.rows)."""
    return id_value if isinstance(id_value, str) else str(id_value)


def hash64(keys: Sequence[str]) -> np.ndarray:
    """A 64-bit hash of each key (blake2b: stable across processes and Python versions)."""
    out = np.empty(len(keys), dtype=np.uint64)
    for i, key in enumerate(keys):
        out[i] = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
    return out


class IdCollector:
    """The ids a worker embedded for one shard, with their input rows."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.rows: list[int] = []

    def add(self, ids: Sequence[Any], rows: Sequence[int]) -> None:
        self.keys.extend(id_key(i) for i in ids)
        self.rows.extend(rows)

    def write(self, path: str) -> None:
        write_ids(path, self.keys, np.asarray(self.rows, dtype=np.int64))


def write_ids(path: str, keys: Sequence[str], rows: np.ndarray) -> None:
    hashes = hash64(keys)
    order = np.argsort(hashes, kind="stable")
    table = pa.table(
        {"h": pa.array(hashes[order]), "row": pa.array(rows[order]), "id": pa.array([keys[i] for i in order])},
        schema=_IDS_SCHEMA,
    )
    pq.write_table(table, path, row_group_size=IDS_ROW_GROUP, compression="zstd", write_statistics=True)


@dataclass(frozen=True)
class Drop:
    """One duplicate row to reject from a shard: its row and id, and who kept the id."""

    row: int
    id: str
    kept_by: str  # the source URI of the shard that keeps the id
    kept_row: int


def precedence(entries: Sequence[dict[str, Any]], policy: str, carried_uris: set[str]) -> list[int]:
    """Indexes of `entries` in the order in which they claim ids (first wins)."""
    if policy == "keep-first":
        return sorted(
            range(len(entries)),
            key=lambda i: (entries[i]["source"]["uri"] not in carried_uris, entries[i]["source"]["uri"]),
        )
    return sorted(range(len(entries)), key=lambda i: entries[i]["source"]["uri"])


def _partition_rows(fs: AbstractFileSystem, root: str, entry: dict[str, Any], lo: int, hi: int) -> pa.Table:
    """The rows of an entry's ids whose hash is in [lo, hi)."""
    ids = entry.get("ids")
    if ids is None:  # written before ids files existed: hash the embedding file's id column
        with fs.open(join(root, entry["path"]), "rb") as fh:
            column = pq.read_table(fh, columns=["id"]).column("id").to_pylist()
        keys = [id_key(v) for v in column]
        table = pa.table(
            {
                "h": pa.array(hash64(keys)),
                "row": pa.array([-1] * len(keys), pa.int64()),
                "id": pa.array(keys, pa.string()),
            }
        )
    else:
        with fs.open(join(root, ids["path"]), "rb") as fh:
            reader = pq.ParquetFile(fh)
            groups = []
            for g in range(reader.num_row_groups):
                stats = reader.metadata.row_group(g).column(0).statistics
                if stats is None or not stats.has_min_max or (stats.max >= lo and stats.min < hi):
                    groups.append(g)
            table = reader.read_row_groups(groups) if groups else _IDS_SCHEMA.empty_table()
    mask = pc.and_(
        pc.greater_equal(table["h"], pa.scalar(lo, pa.uint64())),
        pc.less(table["h"], pa.scalar(min(hi, _SPAN - 1), pa.uint64())),
    )
    if hi >= _SPAN:
        mask = pc.greater_equal(table["h"], pa.scalar(lo, pa.uint64()))
    return table.filter(mask)


def find_duplicates(
    fs: AbstractFileSystem,
    root: str,
    entries: Sequence[dict[str, Any]],
    order: list[int],
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
) -> dict[int, list[Drop]]:
    """Rows to reject, by entry index: every occurrence of an id after the first in `order`."""
    total = sum(int(e.get("rows", 0)) for e in entries)
    partitions = max(1, math.ceil(total / max(1, rows_per_partition)))
    rank = {index: position for position, index in enumerate(order)}
    drops: dict[int, list[Drop]] = {}
    for p in range(partitions):
        lo, hi = p * _SPAN // partitions, (p + 1) * _SPAN // partitions
        hashes, ranks, rows, keys = [], [], [], []
        for index in order:
            if entries[index].get("rows", 0) == 0:
                continue
            part = _partition_rows(fs, root, entries[index], lo, hi)
            if part.num_rows == 0:
                continue
            hashes.append(part["h"].to_numpy())
            ranks.append(np.full(part.num_rows, rank[index], dtype=np.int64))
            rows.append(part["row"].to_numpy())
            keys.append(part["id"])
        if not hashes:
            continue
        h, r, w = np.concatenate(hashes), np.concatenate(ranks), np.concatenate(rows)
        ids = pa.concat_arrays([k.combine_chunks() for k in keys])
        idx = np.lexsort((w, r, h))
        h_sorted = h[idx]
        same = np.flatnonzero(h_sorted[1:] == h_sorted[:-1])  # candidates: equal hashes
        if same.size == 0:
            continue
        starts = np.unique(np.concatenate([same, same + 1]))
        first_of: dict[tuple[int, str], tuple[int, int]] = {}
        for pos in starts:  # few: only rows whose hash another row shares
            i = int(idx[pos])
            key = (int(h[i]), ids[i].as_py())
            owner = (int(r[i]), int(w[i]))
            if key not in first_of:
                first_of[key] = owner
                continue
            kept_rank, kept_row = first_of[key]
            if kept_rank == owner[0]:
                continue  # repeated within one shard: the worker rejected those already
            entry_index = order[owner[0]]
            drops.setdefault(entry_index, []).append(
                Drop(owner[1], key[1], entries[order[kept_rank]]["source"]["uri"], kept_row)
            )
    return drops


def _stem_of(path: str, sha: str, suffix: str) -> str:
    tail = f"-{sha[:12]}{suffix}"
    return path[: -len(tail)] if path.endswith(tail) else path.removesuffix(suffix)


def _upload(fs: AbstractFileSystem, root: str, local: str, stem: str, suffix: str) -> dict[str, Any]:
    sha = sha256_of(fsspec.filesystem("file"), local)
    size = os.path.getsize(local)
    rel = f"{stem}-{sha[:12]}{suffix}"
    upload_atomic(fs, local, join(root, rel))
    return {"path": rel, "bytes": size, "sha256": sha}


def apply_drops(fs: AbstractFileSystem, root: str, entry: dict[str, Any], drops: list[Drop]) -> dict[str, Any]:
    """The entry with `drops` rejected: its files rewritten under new names, counts updated."""
    dropped = {d.id for d in drops}
    stem = _stem_of(entry["path"], entry["sha256"], ".parquet")
    with fs.open(join(root, entry["path"]), "rb") as fh:
        table = pq.read_table(fh)
    keys = pa.array([id_key(v) for v in table.column("id").to_pylist()], pa.string())
    kept = table.filter(pc.invert(pc.is_in(keys, value_set=pa.array(sorted(dropped), pa.string()))))
    removed = table.num_rows - kept.num_rows
    with tempfile.TemporaryDirectory(prefix="e5ray-dupes-") as tmp:
        local = f"{tmp}/shard.parquet"
        pq.write_table(kept, local, compression={"id": "zstd", "embedding": "none"})
        out = _upload(fs, root, local, stem, ".parquet")
        new_stem = out["path"].removesuffix(".parquet")
        ids_ref = None
        if entry.get("ids"):
            with fs.open(join(root, entry["ids"]["path"]), "rb") as fh:
                ids = pq.read_table(fh)
            ids = ids.filter(pc.invert(pc.is_in(ids["id"], value_set=pa.array(sorted(dropped), pa.string()))))
            local_ids = f"{tmp}/ids.parquet"
            pq.write_table(ids, local_ids, row_group_size=IDS_ROW_GROUP, compression="zstd")
            sha = sha256_of(fsspec.filesystem("file"), local_ids)
            ids_rel = f"{new_stem}{IDS_SUFFIX}"
            ids_ref = {"path": ids_rel, "bytes": os.path.getsize(local_ids), "sha256": sha, "rows": ids.num_rows}
            upload_atomic(fs, local_ids, join(root, ids_rel))
    records: list[dict[str, Any]] = []
    if entry.get("rejects"):
        with fs.open(join(root, entry["rejects"]["path"]), "rb") as fh:
            records = [json.loads(line) for line in fh.read().decode("utf-8").splitlines() if line.strip()]
    as_int = pa.types.is_integer(table.schema.field("id").type)
    for d in sorted(drops, key=lambda d: d.row):
        where = f"{d.kept_by} row {d.kept_row}" if d.kept_row >= 0 else d.kept_by
        records.append({"row": d.row, "id": int(d.id) if as_int else d.id, "reason": f"duplicate id: kept in {where}"})
    records.sort(key=lambda r: (r.get("row") is None, r.get("row") or 0))
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    rejects_rel = f"{new_stem}.rejects.jsonl"
    write_atomic(fs, join(root, rejects_rel), blob)
    updated = dict(entry)
    updated.update(out)
    updated["rows"] = entry["rows"] - removed
    updated["rejected"] = entry["rejected"] + removed
    updated["duplicates"] = entry.get("duplicates", 0) + removed
    updated["duplicates_of"] = sorted(set(entry.get("duplicates_of", [])) | {d.kept_by for d in drops})
    updated["rejects"] = {
        "path": rejects_rel,
        "rows": len(records),
        "bytes": len(blob),
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    updated["ids"] = ids_ref
    return updated


def resolve_duplicates(
    fs: AbstractFileSystem,
    root: str,
    entries: list[dict[str, Any]],
    policy: str,
    carried_uris: set[str],
    rows_per_partition: int = DEFAULT_ROWS_PER_PARTITION,
) -> tuple[list[dict[str, Any]], int]:
    """The version's entries with cross-shard duplicates rejected under `policy`, and how many."""
    if policy == "allow" or len(entries) < 2:
        return entries, 0
    order = precedence(entries, policy, carried_uris)
    drops = find_duplicates(fs, root, entries, order, rows_per_partition)
    out = list(entries)
    for index, rows in drops.items():
        out[index] = apply_drops(fs, root, entries[index], rows)
    return out, sum(len(rows) for rows in drops.values())


def stale_dedup(entries: Sequence[dict[str, Any]], unchanged: set[str]) -> list[dict[str, Any]]:
    """Carried entries whose rejected duplicates were kept by a shard that is no longer
    carried unchanged: they must be embedded again so that those ids come back."""
    return [e for e in entries if any(uri not in unchanged for uri in e.get("duplicates_of", []))]
