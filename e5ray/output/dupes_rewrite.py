"""Rejecting cross-shard duplicates from shards whose files are already written.

The driver rewrites each affected shard before the commit (e5ray.output.dupes finds the
rows): the embedding files without the rejected rows (every column kept, so long-text
window columns survive; read back and written in the output's format, so any sink
works), the rejects file with one more line per row naming the shard and row that kept
the id, and the ids file without them.

Invariants: the new files have new content and so new content-addressed names, and a
rewrite done twice names the same files (a run killed after it and before the commit
writes the same files again); the entry's counts change with the files
(`rows + rejected == input_rows` still holds, `duplicates` counts these rows,
`duplicates_of` names the shards that kept them), so every file holds exactly the rows the
manifest counts and readers need no exclusion list.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e5ray.output.id_keys import IDS_SUFFIX, id_key
from e5ray.output.layout import IDS_DIR, REJECTS_DIR, in_folder
from e5ray.output.manifest import FileRef, ShardEntry
from e5ray.output.sinks.base import get_sink
from e5ray.store.filesystem import OutputDir, sha256_of


@dataclass(frozen=True)
class Drop:
    """One duplicate row to reject from a shard: its row and id, and who kept the id."""

    row: int
    id: str
    kept_by: str  # the source URI of the shard that keeps the id
    kept_row: int


def _upload(output: OutputDir, local: str, stem: str, suffix: str, rows: int | None) -> FileRef:
    sha = sha256_of(fsspec.filesystem("file"), local)
    size = os.path.getsize(local)
    rel = f"{stem}-{sha[:12]}{suffix}"
    output.upload(local, rel)
    return FileRef(rel, size, sha, rows, output.stamp(rel))


def _filter_file(output: OutputDir, ref: FileRef, output_format: str, dropped: set[str], local: str) -> int:
    """Write `ref` without the rows whose id is in `dropped` to `local` (every column kept,
    so long-text window columns survive); returns the rows kept."""
    with output.fs.open(output.path(ref.path), "rb") as fh:
        if output_format == "parquet":
            table = pq.read_table(fh)
            keys = pa.array([id_key(v) for v in table.column("id").to_pylist()], pa.string())
            kept = table.filter(pc.invert(pc.is_in(keys, value_set=pa.array(sorted(dropped), pa.string()))))
            pq.write_table(kept, local, compression={"id": "zstd", "embedding": "none"})
            return int(kept.num_rows)
        lines = [line for line in fh.read().decode("utf-8").splitlines() if line.strip()]
    kept_lines = [line for line in lines if id_key(json.loads(line)["id"]) not in dropped]
    with open(local, "w", encoding="utf-8") as out:
        out.writelines(line + "\n" for line in kept_lines)
    return len(kept_lines)


def _rewrite_ids(output: OutputDir, ids: FileRef, dropped: set[str], stem: str, tmp: str, row_group: int) -> FileRef:
    """The entry's ids file without the `dropped` ids, named after the new embedding files' `stem`."""
    with output.fs.open(output.path(ids.path), "rb") as fh:
        table = pq.read_table(fh)
    table = table.filter(pc.invert(pc.is_in(table["id"], value_set=pa.array(sorted(dropped), pa.string()))))
    local_ids = f"{tmp}/ids.pq"
    pq.write_table(table, local_ids, row_group_size=row_group, compression="zstd")
    sha = sha256_of(fsspec.filesystem("file"), local_ids)
    ids_path, ids_size = in_folder(IDS_DIR, f"{stem}{IDS_SUFFIX}"), os.path.getsize(local_ids)
    output.upload(local_ids, ids_path)  # may move the local file
    return FileRef(ids_path, ids_size, sha, table.num_rows, output.stamp(ids_path))


def _rewrite_rejects(output: OutputDir, entry: ShardEntry, drops: list[Drop], stem: str) -> FileRef:
    """The entry's rejects with one more record per dropped row (saying who kept its id), in row order."""
    records: list[dict[str, Any]] = []
    if entry.rejects is not None:
        text = output.read_bytes(entry.rejects.path).decode("utf-8")
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
    as_int = entry.id_type == "int64"
    for d in sorted(drops, key=lambda d: d.row):
        where = f"{d.kept_by} row {d.kept_row}" if d.kept_row >= 0 else d.kept_by
        records.append({"row": d.row, "id": int(d.id) if as_int else d.id, "reason": f"duplicate id: kept in {where}"})
    records.sort(key=lambda r: (r.get("row") is None, r.get("row") or 0))
    blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    rejects_path = in_folder(REJECTS_DIR, f"{stem}.rejects.jsonl")
    output.write_atomic(rejects_path, blob)
    return FileRef(rejects_path, len(blob), hashlib.sha256(blob).hexdigest(), len(records), output.stamp(rejects_path))


def apply_drops(
    output: OutputDir, entry: ShardEntry, drops: list[Drop], output_format: str, ids_row_group: int
) -> ShardEntry:
    """The entry with `drops` (documents) rejected: its files rewritten under new names
    (content-addressed, so a rewrite done twice names the same files), counts updated.
    `ids_row_group`: rows per row group of the rewritten ids file."""
    dropped = {d.id for d in drops}
    suffix = str(getattr(get_sink(output_format), "suffix", ""))
    files, removed = [], 0
    with tempfile.TemporaryDirectory(prefix="e5ray-dupes-") as tmp:
        for n, ref in enumerate(entry.files):
            tail = f"-{ref.sha256[:12]}{suffix}"
            stem = ref.path[: -len(tail)] if ref.path.endswith(tail) else ref.path.removesuffix(suffix)
            local = f"{tmp}/{n}{suffix}"
            rows = _filter_file(output, ref, output_format, dropped, local)
            removed += (ref.rows if ref.rows is not None else rows) - rows
            files.append(_upload(output, local, stem, suffix, rows))
        new_stem = files[0].path.removesuffix(suffix)
        ids_ref = None
        if entry.ids is not None:
            ids_ref = _rewrite_ids(output, entry.ids, dropped, new_stem, tmp, ids_row_group)
    rejects = _rewrite_rejects(output, entry, drops, new_stem)
    documents = len(drops)  # ids are unique within a shard: one dropped id is one document
    chunked = entry.documents is not None and entry.rows != entry.documents  # rows are windows
    return dataclasses.replace(
        entry,
        files=tuple(files),
        rows=entry.rows - removed,
        rejected=entry.rejected + documents,
        documents=entry.documents - documents if entry.documents is not None else None,
        windows=entry.windows - removed if chunked and entry.windows is not None else entry.windows,
        duplicates=entry.duplicates + documents,
        duplicates_of=tuple(sorted(set(entry.duplicates_of) | {d.kept_by for d in drops})),
        rejects=rejects,
        ids=ids_ref,
    )
