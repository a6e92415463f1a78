"""What a new version changed, row by row, from what the run already knows.

Without reading a single vector:
- a file the new version shares with the previous one (a carried unit) holds the same rows,
  byte for byte (names are content-addressed): all of them unchanged, none read;
- of the previous version's other files and the new version's other files, only the `id` and
  `content_hash` columns are read (an id may move between files). Joined on id: present on both
  sides with the same hash: unchanged; with another hash: updated (text or tokenizer changed);
  new side only: inserted; old side only: deleted.
An id cannot sit in a shared file on one side and a non-shared file on the other: ids are
unique within a version, and a shared file holds the same ids in both.

When a side lacks `content_hash` (files written before it, or `--long-text average`), an id
present on both sides counts as updated: never wrong for a reader (an upsert of an unchanged
vector), and the record says `exact: false`. Everything is "replaced" instead of listed for
the first version (every row is new: a reader starts from a full read), `--full`, a new space,
and outputs whose rows an id does not name: JSONL shards (reading ids would parse every row),
`--long-text chunk` (one row per window), `--duplicate-ids allow`, or ids found twice.

Memory: the ids and hashes of the non-shared files (~16 bytes + the id per row); the
carried share costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e5ray.model.space import EmbeddingSpace
from e5ray.output.change_file import CHANGE_COLUMN, RowChanges
from e5ray.output.content_hash import HASH_COLUMN, HASH_TYPE
from e5ray.output.listing import parallel_map
from e5ray.output.manifest import Manifest, ShardEntry
from e5ray.store.filesystem import OutputDir


def replaced_reason(
    previous: Manifest | None, space: EmbeddingSpace, full: bool, output_format: str, duplicate_ids: str
) -> str | None:
    """Why the new version records "everything replaced" instead of rows; None: rows."""
    if previous is None:
        return "the first version: every row is new"
    if full:
        return "built with --full"
    if previous.space.fingerprint != space.fingerprint:
        return f"a new space ({previous.space.fingerprint[:12]} -> {space.fingerprint[:12]})"
    if output_format != "parquet" or previous.output_format != "parquet":
        return f"a {output_format} output (row changes are read from Parquet shards)"
    if space.long_text == "chunk":
        return "--long-text chunk: one row per window, ids repeat"
    if duplicate_ids == "allow":
        return "--duplicate-ids allow: an id may name several rows"
    return None


def compute_row_changes(
    output: OutputDir,
    previous: Manifest | None,
    shards: Sequence[ShardEntry],
    space: EmbeddingSpace,
    full: bool,
    output_format: str,
    duplicate_ids: str,
) -> tuple[RowChanges, float]:
    """The row changes from `previous` to a version holding `shards`, and the seconds taken."""
    t0 = time.perf_counter()
    reason = replaced_reason(previous, space, full, output_format, duplicate_ids)
    if reason is not None or previous is None:
        return RowChanges.replaced(reason or ""), time.perf_counter() - t0
    old_files = _files(previous.shards)
    new_files = _files(shards)
    shared = old_files.keys() & new_files.keys()
    old = _read_ids(output, [p for p in old_files if p not in shared])
    new = _read_ids(output, [p for p in new_files if p not in shared])
    if old is None or new is None:
        return RowChanges.replaced("ids found twice in one version"), time.perf_counter() - t0
    carried_rows = sum(new_files[p] for p in shared)
    return _join(old, new, carried_rows), time.perf_counter() - t0


def _files(shards: Sequence[ShardEntry]) -> dict[str, int]:
    return {ref.path: ref.rows or 0 for entry in shards for ref in entry.files}


def _read_ids(output: OutputDir, paths: list[str]) -> pa.Table | None:
    """`id` and `content_hash` (null where a file has none) of `paths`; None if an id repeats."""

    def read(path: str) -> pa.Table:
        with output.fs.open(output.path(path), "rb") as fh:
            parquet = pq.ParquetFile(fh)
            names = parquet.schema_arrow.names
            table = parquet.read(columns=[c for c in ("id", HASH_COLUMN) if c in names])
        if HASH_COLUMN not in table.schema.names:
            table = table.append_column(HASH_COLUMN, pa.nulls(table.num_rows, HASH_TYPE))
        return table.select(["id", HASH_COLUMN])

    tables = [t for t in parallel_map(read, paths) if t.num_rows]
    if not tables:
        return pa.table({"id": pa.array([], pa.int64()), HASH_COLUMN: pa.array([], HASH_TYPE)})
    table = pa.concat_tables(tables, promote_options="permissive")
    if pc.count_distinct(table.column("id")).as_py() != table.num_rows:
        return None
    return table


def _join(old: pa.Table, new: pa.Table, carried_rows: int) -> RowChanges:
    if old.schema.field("id").type != new.schema.field("id").type:  # int64 <-> string: compared as text
        as_text = pa.schema([("id", pa.string()), (HASH_COLUMN, HASH_TYPE)])
        old, new = old.cast(as_text), new.cast(as_text)
    joined = _outer(old, new)
    ids, before, after, in_old, in_new = (
        joined.column(name).combine_chunks() for name in ("id", "old_hash", "new_hash", "in_old", "in_new")
    )
    in_old, in_new = pc.is_valid(in_old), pc.is_valid(in_new)
    both = pc.and_(in_old, in_new)
    same = pc.fill_null(pc.equal(before, after), False)
    exact = not pc.any(pc.and_(both, pc.or_(pc.is_null(before), pc.is_null(after)))).as_py()
    kind = pc.case_when(
        pa.StructArray.from_arrays(
            [pc.and_(both, same), both, in_new, in_old], ["unchanged", "updated", "inserted", "deleted"]
        ),
        pa.scalar(None, pa.string()),
        "updated",
        "inserted",
        "deleted",
    )
    listed = pa.table({"id": ids, CHANGE_COLUMN: kind}).filter(pc.is_valid(kind))
    counts = _counts(listed)
    counts["unchanged"] = joined.num_rows - listed.num_rows + carried_rows
    return RowChanges(listed, counts, exact=exact)


def _outer(old: pa.Table, new: pa.Table) -> pa.Table:
    left = pa.table({"id": old["id"], "old_hash": old[HASH_COLUMN], "in_old": pa.repeat(True, old.num_rows)})
    right = pa.table({"id": new["id"], "new_hash": new[HASH_COLUMN], "in_new": pa.repeat(True, new.num_rows)})
    return left.join(right, "id", join_type="full outer")


def _counts(listed: pa.Table) -> dict[str, Any]:
    found = {str(r["values"]): int(r["counts"]) for r in pc.value_counts(listed.column(CHANGE_COLUMN)).to_pylist()}
    return {kind: found.get(kind, 0) for kind in ("inserted", "updated", "deleted")}
