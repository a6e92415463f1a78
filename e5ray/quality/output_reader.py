"""Reading an output's current version for the quality tools (`search`, `compare`): which
version and files the manifest names, and its vectors streamed batch by batch.

Invariants: only the newest committed version is read, and only Parquet outputs (the format
these tools stream); vectors are read `batch_rows` at a time, never a whole table, so memory
is one batch whatever the size of the output. In chunk mode a row is a window, keyed by
(id, window). This is the one place in `e5ray.quality` that knows the manifest.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.errors import UsageError
from e5ray.model.space import EmbeddingSpace
from e5ray.model.windows import WINDOW_COLUMNS
from e5ray.output.versions import load_latest
from e5ray.store.filesystem import OutputDir, filesystem_for, join


@dataclass(frozen=True)
class OutputVersion:
    """What a search needs of an output's current version (read from its manifest)."""

    number: int
    space: EmbeddingSpace
    input: dict[str, Any]  # uri, format, id_column, text_column of the corpus it came from
    files: list[tuple[str, str]]  # (vector file relative to the output root, source relpath)


def current_version(uri: str, storage_options: dict[str, Any] | None = None) -> OutputVersion:
    """The output's newest committed version; UsageError when nothing was committed or its
    vectors are not in Parquet (the format search streams)."""
    output = OutputDir(uri, storage_options)
    manifest = load_latest(output)
    if manifest is None:
        raise UsageError(f"{output.uri}: no manifest (not an e5ray output, or nothing committed yet)")
    if manifest.output_format != "parquet":
        raise UsageError(f"{output.uri} holds {manifest.output_format} shards; search reads parquet outputs")
    return OutputVersion(
        number=manifest.version,
        space=manifest.space,
        input=manifest.input,
        files=[(file.path, shard.source.relpath) for shard in manifest.shards for file in shard.files],
    )


def stream_vectors(
    fs: Any, path: str, dim: int, batch_rows: int, windowed: bool
) -> Iterator[tuple[np.ndarray, pa.RecordBatch]]:
    """(vectors (n, dim) float32, the batch's other columns) for batches of at most `batch_rows` rows."""
    columns = ["id", "embedding", *WINDOW_COLUMNS] if windowed else ["id", "embedding"]
    with fs.open(path, "rb") as fh:
        reader = pq.ParquetFile(fh)
        if reader.metadata.num_rows == 0:  # a shard whose rows were all rejected
            return
        for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
            flat = batch.column("embedding").flatten().to_numpy(zero_copy_only=False)
            yield flat.reshape(batch.num_rows, dim), batch


@dataclass
class OutputReader:
    """An output's current version as (keys, vectors) batches, as `e5ray compare` reads it."""

    uri: str
    version: OutputVersion
    fs: Any
    root: str
    rows: int = 0  # counted while streaming

    @classmethod
    def open(cls, uri: str, storage_options: dict[str, Any] | None = None) -> OutputReader:
        fs, root = filesystem_for(uri, storage_options)
        return cls(uri, current_version(uri, storage_options), fs, root)

    @property
    def dim(self) -> int:
        return self.version.space.dim

    @property
    def windowed(self) -> bool:
        return self.version.space.long_text == "chunk"

    def size(self) -> int:
        """Bytes of its vector files (an estimate of the memory its vectors take)."""
        return sum(int(self.fs.size(join(self.root, path))) for path, _ in self.version.files)

    def batches(self, batch_rows: int) -> Iterator[tuple[list[Any], np.ndarray]]:
        """(keys, vectors) of the current version, file by file, `batch_rows` at a time."""
        for path, _ in self.version.files:
            for vectors, batch in stream_vectors(self.fs, join(self.root, path), self.dim, batch_rows, self.windowed):
                ids = batch.column("id").to_pylist()
                keys = list(zip(ids, batch.column("window").to_pylist(), strict=True)) if self.windowed else ids
                yield keys, vectors

    def describe(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version.number,
            "rows": self.rows,
            "space": self.version.space.to_dict(),
        }
