"""The change feed: what takes a reader from version N to the current one, as Arrow batches.

    feed = e5ray.output.change_feed.open_changes("out/sample", since=3)
    for batch in feed.upserts():   # id, embedding, kept columns: insert or replace these rows
        ...
    for batch in feed.deletes():   # id: remove these rows
        ...
    feed.reader()                  # both in one stream, with an `op` column ("delete", "upsert")

Collapsed across versions (`e5ray.output.change_since` checks that N..C can be served): per
id, the first change since N says whether the reader has it (anything but "inserted") and the
last whether the current version has it (anything but "deleted"). Had and has: upsert; has
not had: upsert; had, has not: delete; neither (inserted, then deleted): nothing. An id
updated twice is one upsert.

Vectors come from the current version's files that version N did not hold, read file by
file and row group by row group, filtered to the upserted ids. An upserted id not found
there sits in a file N and C share (names are content-addressed: e.g. a text edited, then
edited back), so the reader already holds that very row: it is left out.

Memory: the touched ids (from the change files), one file's ids, the row groups holding
upserts (a mask and the ids of each) and one row group's columns; never the corpus.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e5ray.errors import UsageError
from e5ray.output.change_file import CHANGE_COLUMN, KEY, read_change_file
from e5ray.output.change_since import VersionChain, resolve_since
from e5ray.output.content_hash import HASH_COLUMN
from e5ray.output.manifest import Manifest
from e5ray.output.versions import version_name
from e5ray.store.filesystem import OutputDir

OP_COLUMN = "op"
UPSERT, DELETE = "upsert", "delete"
BATCH_ROWS = 8_192


@dataclass(frozen=True)
class _Hit:
    """A row group of a new file holding upserted rows: which rows (`mask`) and their ids."""

    path: str
    group: int
    mask: pa.Array
    ids: pa.Array


@dataclass
class ChangeFeed:
    """The changes from version `since` to `version` of an output (built by `open_changes`)."""

    output: OutputDir
    since: int
    version: int
    manifest: Manifest  # the current version
    upsert_ids: pa.Array
    delete_ids: pa.Array
    files: list[str]  # the current version's files that version `since` did not hold
    schema: pa.Schema  # of an upsert: id, embedding, kept columns
    upserted: int = 0  # rows the last full pass over upserts() yielded
    _hits: list[_Hit] | None = field(default=None, repr=False)  # found by _find_hits, once

    def upserts(self) -> pa.RecordBatchReader:
        """id, embedding and kept columns of every row inserted or changed since `since`."""
        return pa.RecordBatchReader.from_batches(self.schema, self._upsert_batches())

    def deletes(self) -> pa.RecordBatchReader:
        """The ids of `since`'s rows that the current version no longer holds."""
        schema = pa.schema([self.schema.field("id")])
        ids = self.delete_ids.cast(schema.field("id").type)
        batches = [pa.record_batch([ids.slice(i, BATCH_ROWS)], schema=schema) for i in range(0, len(ids), BATCH_ROWS)]
        return pa.RecordBatchReader.from_batches(schema, batches)

    def reader(self) -> pa.RecordBatchReader:
        """Deletes, then upserts, in one stream: `op` first, the upsert's columns null on a delete."""
        fields = [pa.field(OP_COLUMN, pa.string(), nullable=False), *(f.with_nullable(True) for f in self.schema)]
        schema = pa.schema(fields, metadata=self.schema.metadata)

        def batches() -> Iterator[pa.RecordBatch]:
            for kind, reader in ((DELETE, self.deletes()), (UPSERT, self.upserts())):
                for batch in reader:
                    ops = pa.array([kind] * batch.num_rows, pa.string())
                    columns = [ops] + [
                        batch.column(f.name) if f.name in batch.schema.names else pa.nulls(batch.num_rows, f.type)
                        for f in list(schema)[1:]
                    ]
                    yield pa.record_batch(columns, schema=schema)

        return pa.RecordBatchReader.from_batches(schema, batches())

    def upserted_ids(self) -> pa.Array:
        """The ids `upserts()` yields (the upserted ids the new files hold), from their `id`
        columns only: a sink that deletes before it appends deletes these, never an upserted
        id left out because the reader already holds its row."""
        hits = self._find_hits()
        if not hits:
            return pa.array([], self.schema.field("id").type)
        return pa.concat_arrays([hit.ids for hit in hits]).cast(self.schema.field("id").type)

    def _find_hits(self) -> list[_Hit]:
        """The row groups holding upserted rows, file by file: each file's `id` column (a few
        bytes a row) matched against the upserted ids once (once per row group built that set
        ~500 times at 70,000 upserts in 16 files: seconds). Memory: one file's ids at a time,
        then the hits' masks and ids (bounded by the upserts). Read once, kept."""
        if self._hits is None:
            self._hits = []
            for path in self.files if len(self.upsert_ids) else []:
                with self.output.fs.open(self.output.path(path), "rb") as fh:
                    parquet = pq.ParquetFile(fh)
                    file_ids = parquet.read(columns=["id"]).column("id").combine_chunks()
                    layout = parquet.metadata
                file_mask, start = pc.is_in(file_ids, value_set=self.upsert_ids), 0
                for group in range(layout.num_row_groups):
                    rows = layout.row_group(group).num_rows
                    mask = file_mask.slice(start, rows)
                    if pc.any(mask).as_py():
                        self._hits.append(_Hit(path, group, mask, file_ids.slice(start, rows).filter(mask)))
                    start += rows
        return self._hits

    def _upsert_batches(self) -> Iterator[pa.RecordBatch]:
        """The other columns only of the row groups holding an upserted id. A vector column is
        most of a file's bytes and most of its decoding, so a row group without an upsert costs
        its ids only; one with any upsert is decoded whole (Parquet reads no finer than a column
        chunk). A refresh writes the rows it embedded in row groups of their own
        (e5ray.worker.row_kinds), so these are few."""
        self.upserted = 0
        others = [name for name in self.schema.names if name != "id"]
        by_file: dict[str, list[_Hit]] = {}
        for hit in self._find_hits():
            by_file.setdefault(hit.path, []).append(hit)
        for path, hits in by_file.items():
            with self.output.fs.open(self.output.path(path), "rb") as fh:
                parquet = pq.ParquetFile(fh)
                for hit in hits:
                    rest = parquet.read_row_group(hit.group, columns=others).filter(hit.mask)
                    wanted = pa.Table.from_arrays([hit.ids, *rest.columns], names=["id", *others])
                    self.upserted += len(hit.ids)
                    yield from wanted.cast(self.schema).to_batches(max_chunksize=BATCH_ROWS)


def open_changes(
    output: str | OutputDir,
    since: int,
    storage_options: dict[str, Any] | None = None,
    current: Manifest | None = None,
) -> ChangeFeed:
    """The change feed of `output` from version `since` to its newest version; one-line
    ChangesUnavailableError when it cannot be served (another space, a version that replaced
    everything, or one gc removed: the message names the oldest version it can serve).
    `current`: the newest manifest when the caller has read it already (not read again; a
    version committed since is read and served instead)."""
    handle = output if isinstance(output, OutputDir) else OutputDir(output, storage_options)
    chain = resolve_since(handle, since, current)
    upserts, deletes = collapse(handle, chain)
    before = {ref.path for entry in chain.since.shards for ref in entry.files}
    files = [ref.path for entry in chain.current.shards for ref in entry.files if ref.path not in before]
    schema = _upsert_schema(handle, chain.current)
    return ChangeFeed(handle, since, chain.current.version, chain.current, upserts, deletes, files, schema)


def collapse(output: OutputDir, chain: VersionChain) -> tuple[pa.Array, pa.Array]:
    """The ids to upsert and to delete, from the change files of the versions after `since`.
    One version needs no grouping (a change file lists each id once): at 80,000 listed ids
    the group-by cost `changes` 30 MiB of its peak RSS."""
    tables = []
    for manifest in chain.between:
        ref = manifest.row_changes
        assert ref is not None  # resolve_since checked it
        table = read_change_file(output, ref, f"{version_name(manifest.version)} ({KEY})")
        tables.append(table)
    if not tables:
        return pa.array([], pa.int64()), pa.array([], pa.int64())
    if len(tables) == 1:  # one version (a nightly sync): each id listed once, its change is first and last
        ids, change = tables[0].column("id"), tables[0].column(CHANGE_COLUMN)
        gone = pc.equal(change, "deleted")
        return ids.filter(pc.invert(gone)).combine_chunks(), ids.filter(gone).combine_chunks()
    changes = pa.concat_tables(tables, promote_options="permissive")  # in version order
    per_id = changes.group_by("id", use_threads=False).aggregate([(CHANGE_COLUMN, "first"), (CHANGE_COLUMN, "last")])
    first, last = per_id.column(f"{CHANGE_COLUMN}_first"), per_id.column(f"{CHANGE_COLUMN}_last")
    had, has = pc.not_equal(first, "inserted"), pc.not_equal(last, "deleted")
    ids = per_id.column("id")
    upserts = ids.filter(has).combine_chunks()
    deletes = ids.filter(pc.and_(had, pc.invert(has))).combine_chunks()
    return upserts, deletes


def _upsert_schema(output: OutputDir, manifest: Manifest) -> pa.Schema:
    """The current version's columns but the content hash (e5ray's own), with its metadata."""
    for entry in manifest.shards:
        for ref in entry.files:
            with output.fs.open(output.path(ref.path), "rb") as fh:
                schema = pq.ParquetFile(fh).schema_arrow
            return pa.schema([f for f in schema if f.name != HASH_COLUMN], metadata=schema.metadata)
    id_type = pa.string() if any(e.id_type == "string" for e in manifest.shards) else pa.int64()
    return pa.schema([("id", id_type), ("embedding", pa.list_(pa.float32(), manifest.space.dim))])


FEED_FORMATS = ("parquet", "jsonl")


def write_feed(reader: pa.RecordBatchReader, path: str, fmt: str = "parquet") -> int:
    """Stream `reader` (a `ChangeFeed.reader()`) to `path` (local or fsspec URL) as Parquet or
    JSONL, one batch at a time; returns the rows written."""
    import json

    import fsspec

    if fmt not in FEED_FORMATS:
        raise UsageError(f"--format {fmt!r}: not one of {', '.join(FEED_FORMATS)}")
    rows = 0
    with fsspec.open(path, "wb") as fh:
        if fmt == "parquet":
            with pq.ParquetWriter(fh, reader.schema, compression="zstd") as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            return rows
        for batch in reader:
            lines = (json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in batch.to_pylist())
            fh.write("".join(lines).encode())
            rows += batch.num_rows
    return rows
