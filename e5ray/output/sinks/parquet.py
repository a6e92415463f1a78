"""Parquet sink: the output contract other tools read.

One file per shard, columns `id` (the input's type kept) and `embedding`
(`fixed_size_list<float32>[dim]`, not Ray's tensor extension type, so any Parquet
reader understands it). ids are zstd-compressed; embeddings are stored uncompressed,
since float noise does not compress and the codec would only cost CPU. Each `write` is one
row group (chunks are far below Arrow's default maximum): `e5ray.worker.row_kinds` relies
on it to keep a refresh's carried and new rows in row groups of their own.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.output.sinks.base import HashingFile, SinkFile
from e5ray.store.tempfiles import owner_tag


def embedding_schema(id_type: pa.DataType, dim: int, extra: dict[str, pa.DataType] | None = None) -> pa.Schema:
    fields = [("id", id_type), ("embedding", pa.list_(pa.float32(), dim))]
    return pa.schema(fields + list((extra or {}).items()))


def _column(values: Any) -> pa.Array:
    """An Arrow array of a kept column: Arrow input as it is; Python values inferred, and
    JSON-encoded where one column mixes types (JSONL inputs may)."""
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError):
        return pa.array([v if v is None or isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def _cast(column: pa.Array, target: pa.DataType) -> pa.Array:
    """A later chunk's values in the type the file took from its first chunk."""
    if column.type == target:
        return column
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pa.array([None if v is None else json.dumps(v) for v in column.to_pylist()], pa.string()).cast(target)


class ParquetSink:
    format: ClassVar[str] = "parquet"
    suffix: ClassVar[str] = ".parquet"

    def __init__(self) -> None:
        self._path: str | None = None
        self._file: HashingFile | None = None
        self._writer: pq.ParquetWriter | None = None
        self._rows = 0
        self._id_type: pa.DataType = pa.int64()
        self._dim = 0
        self._metadata: dict[str, str] = {}

    def open(
        self, directory: str | None, stem: str, id_type: pa.DataType, dim: int, metadata: dict[str, str] | None = None
    ) -> None:
        # The writer's host and pid in the name: an interrupted run and `gc` remove it once it is dead.
        fd, self._path = tempfile.mkstemp(prefix=f".{stem}.{owner_tag()}.", suffix=f"{self.suffix}.tmp", dir=directory)
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; shards are meant to be read by others
        self._file = HashingFile(fd)  # written through the open descriptor: hashed on the way, no reopening
        self._id_type, self._dim, self._metadata = id_type, dim, dict(metadata or {})

    def _start(self, extra: dict[str, pa.DataType] | None) -> pq.ParquetWriter:
        # The writer starts at the first write, when the extra columns' types are known.
        assert self._file is not None, "open() first"
        schema = embedding_schema(self._id_type, self._dim, extra).with_metadata(self._metadata)
        return pq.ParquetWriter(self._file, schema, compression={"id": "zstd", "embedding": "none"})

    def write(self, ids: list[Any], vectors: np.ndarray, extra: dict[str, Any] | None = None) -> None:
        columns = {name: _column(values) for name, values in (extra or {}).items()}
        if self._writer is None:
            # A kept column that is all null so far is written as strings (JSON inputs).
            types = {name: pa.string() if col.type == pa.null() else col.type for name, col in columns.items()}
            self._writer = self._start(types)
        schema = self._writer.schema
        columns = {name: _cast(col, schema.field(name).type) for name, col in columns.items()}
        flat = pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1), type=pa.float32())
        arrays = [pa.array(ids, type=self._id_type), pa.FixedSizeListArray.from_arrays(flat, self._dim)]
        self._writer.write_table(pa.Table.from_arrays([*arrays, *columns.values()], schema=schema))
        self._rows += len(ids)

    @property
    def local_path(self) -> str | None:
        return self._path

    def close(self) -> list[SinkFile]:
        if self._writer is None:  # a shard with no rows still gets its (empty) output file
            self._writer = self._start(None)
        self._writer.close()
        self._writer = None
        assert self._path is not None and self._file is not None
        self._file.close()  # synced: the marker that will name it must not outlive it
        return [SinkFile(self._path, self.suffix, self._rows, self._file.hexdigest())]

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._file is not None:
            self._file.discard()
        if self._path is not None and os.path.exists(self._path):
            os.unlink(self._path)

    @classmethod
    def check(cls, fs: Any, path: str, dim: int) -> tuple[int, list[str]]:
        try:
            with fs.open(path, "rb") as fh:
                meta = pq.ParquetFile(fh)
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except (OSError, pa.ArrowException) as exc:  # an unreadable file is a finding, not a crash
            return 0, [f"unreadable Parquet ({exc})"]
        expected = pa.list_(pa.float32(), dim)
        if schema.names[:2] != ["id", "embedding"] or schema.field("embedding").type != expected:
            return rows, [f"schema {schema}, expected id + embedding {expected}"]
        return rows, []
