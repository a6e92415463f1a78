"""Reading Parquet shards: whole, one work unit of consecutive row groups, or one row slice.

Invariants: the id and text columns (and every kept column) must exist, else the shard
fails with a configuration error naming the columns it has; chunks hold at most
`chunk_rows` rows and number their rows from the shard's first row, also inside a unit,
so a rejected row is located in the file. The row-group statistics come from the footer
alone, so planning units costs one ranged read per file. A row slice (`e5ray.corpus.units`)
reads its row group's needed columns through a small buffered stream from the group's start
and stops after its last row: it never holds the whole group, and never reads past its end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.corpus.chunk import Chunk
from e5ray.corpus.shard import SourceShard
from e5ray.corpus.units import RowGroupStats, UnitRange
from e5ray.errors import CorpusError
from e5ray.store.filesystem import filesystem_for


def _open_parquet(fh: Any, uri: str, buffer_size: int = 0) -> pq.ParquetFile:
    """The file's reader; `buffer_size` > 0 streams column chunks through a buffer of that size
    (pre-buffering off: pyarrow 26 would otherwise read every whole column chunk first)."""
    try:
        if buffer_size:
            return pq.ParquetFile(fh, buffer_size=buffer_size, pre_buffer=False)
        return pq.ParquetFile(fh)
    except pa.ArrowInvalid as exc:
        raise CorpusError(f"{uri} is not a readable Parquet file: {exc}") from exc


def parquet_row_groups(
    shard: SourceShard, text_column: str, storage_options: dict[str, Any] | None = None
) -> list[RowGroupStats]:
    """Rows and uncompressed text bytes of each row group, from the footer alone (one ranged read)."""
    fs, path = filesystem_for(shard.uri, storage_options)
    with fs.open(path, "rb") as fh:
        meta = _open_parquet(fh, shard.uri).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    col = names.index(text_column) if text_column in names else None
    stats = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        text = group.column(col).total_uncompressed_size if col is not None else group.total_byte_size
        stats.append(RowGroupStats(group.num_rows, int(text)))
    return stats


def _check_parquet_columns(
    reader: pq.ParquetFile, uri: str, id_column: str, text_column: str, keep: tuple[str, ...]
) -> None:
    names = reader.schema_arrow.names
    missing = [c for c in (id_column, text_column) if c not in names]
    if missing:
        raise CorpusError(f"{uri}: no column {missing} (columns: {names}); set --id-column/--text-column")
    missing = [c for c in keep if c not in names]
    if missing:
        raise CorpusError(f"{uri}: no column {missing} to keep (columns: {names}); see --keep-columns")


# A slice streams its group through a buffer of this size instead of reading whole column
# chunks: memory stays bounded by the buffer and one batch whatever the group's size, and the
# read stops at the slice's end.
SLICE_BUFFER = 1 << 20


def _unit_row_groups(reader: pq.ParquetFile, uri: str, unit: UnitRange | None) -> tuple[list[int] | None, int]:
    """The row groups to read (None: all) and the shard row number of the first of them."""
    if unit is None:
        return None, 0
    meta = reader.metadata
    if unit.kind == "slice":
        first = 0
        for i in range(reader.num_row_groups):
            rows = meta.row_group(i).num_rows
            if first <= unit.start and unit.stop <= first + rows:
                return [i], first
            first += rows
        raise CorpusError(f"{uri}: unit {unit.label} does not lie inside one of its row groups ({first} rows)")
    if unit.kind != "rows" or unit.stop > reader.num_row_groups:
        raise CorpusError(f"{uri}: unit {unit.label} does not fit its {reader.num_row_groups} row groups")
    start = sum(meta.row_group(i).num_rows for i in range(unit.start))
    return list(range(unit.start, unit.stop)), start


def _batches(
    reader: pq.ParquetFile,
    columns: list[str],
    chunk_rows: int,
    unit: UnitRange | None,
    groups: list[int] | None,
    start: int,
) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(file row of its first row, batch) for the unit's rows; a slice's batches cut to `[start, stop)`."""
    for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns, row_groups=groups):
        lo, hi = start, start + batch.num_rows
        start = hi
        if unit is None or unit.kind != "slice":
            yield lo, batch
            continue
        if hi <= unit.start:
            continue
        cut = batch.slice(max(0, unit.start - lo), min(hi, unit.stop) - max(lo, unit.start))
        yield max(lo, unit.start), cut
        if hi >= unit.stop:
            return


def parquet_chunks(
    fs: Any,
    path: str,
    uri: str,
    id_column: str,
    text_column: str,
    chunk_rows: int,
    unit: UnitRange | None = None,
    keep: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    """The `Reader` for Parquet: the shard's (or unit's) rows in batches of `chunk_rows`."""
    with fs.open(path, "rb") as fh:
        buffered = unit is not None and unit.kind == "slice"
        reader = _open_parquet(fh, uri, SLICE_BUFFER if buffered else 0)
        _check_parquet_columns(reader, uri, id_column, text_column, keep)
        id_type = reader.schema_arrow.field(id_column).type
        groups, start = _unit_row_groups(reader, uri, unit)
        columns = list(dict.fromkeys([id_column, text_column, *keep]))  # a kept text column is read once
        for first, batch in _batches(reader, columns, chunk_rows, unit, groups, start):
            ids = batch.column(id_column).to_pylist()
            texts = batch.column(text_column).to_pylist()
            extra = {name: batch.column(name) for name in keep}
            yield Chunk(first, ids, texts, {}, id_type, extra=extra)
