"""JSONL sink: one `{"id": ..., "embedding": [floats]}` object per line.

A debug and interchange format: readable with `head`, loadable by anything that reads
JSON, and about four times the size of Parquet. Floats are written with Python's
shortest round-trip repr of each float32 (as a float64), so reading a line back gives
the very same float32 vector.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from typing import IO, Any, ClassVar

import numpy as np
import pyarrow as pa

from e5ray.output.sinks.base import HashingFile, SinkFile
from e5ray.store.tempfiles import owner_tag


class JsonlSink:
    format: ClassVar[str] = "jsonl"
    suffix: ClassVar[str] = ".embeddings.jsonl"

    def __init__(self) -> None:
        self._path: str | None = None
        self._file: HashingFile | None = None
        self._fh: IO[str] | None = None
        self._rows = 0

    def open(
        self, directory: str | None, stem: str, id_type: pa.DataType, dim: int, metadata: dict[str, str] | None = None
    ) -> None:
        # No place for metadata in JSON lines: the manifest records the space.
        fd, self._path = tempfile.mkstemp(prefix=f".{stem}.{owner_tag()}.", suffix=f"{self.suffix}.tmp", dir=directory)
        os.fchmod(fd, 0o644)
        self._file = HashingFile(fd)  # hashed on the way to disk, synced on close
        self._fh = io.TextIOWrapper(io.BufferedWriter(self._file), encoding="utf-8")

    def write(self, ids: list[Any], vectors: np.ndarray, extra: dict[str, Any] | None = None) -> None:
        assert self._fh is not None, "open() first"
        rows = np.asarray(vectors, dtype=np.float32).tolist()
        # Arrow arrays (kept Parquet columns) as Python values, nulls kept; numpy (window columns) likewise.
        columns = {
            name: values.to_pylist() if isinstance(values, pa.Array) else np.asarray(values).tolist()
            for name, values in (extra or {}).items()
        }
        for i, (id_value, vector) in enumerate(zip(ids, rows, strict=True)):
            record = {"id": id_value, "embedding": vector, **{name: values[i] for name, values in columns.items()}}
            self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._rows += len(ids)

    @property
    def local_path(self) -> str | None:
        return self._path

    def close(self) -> list[SinkFile]:
        assert self._fh is not None and self._path is not None and self._file is not None, "open() first"
        self._fh.close()  # closes (and syncs) the file below it
        self._fh = None
        return [SinkFile(self._path, self.suffix, self._rows, self._file.hexdigest())]

    def abort(self) -> None:
        if self._file is not None:
            self._file.discard()  # first: closing the text layer would sync a file about to go
        if self._fh is not None:
            try:
                self._fh.close()
            except ValueError:  # its buffer's file is already closed
                pass
            self._fh = None
        if self._path is not None and os.path.exists(self._path):
            os.unlink(self._path)

    @classmethod
    def check(cls, fs: Any, path: str, dim: int) -> tuple[int, list[str]]:
        rows = 0
        with fs.open(path, "rb") as fh:
            for number, line in enumerate(fh, start=1):
                try:
                    record = json.loads(line)
                    vector = record["embedding"]
                    if "id" not in record or not isinstance(vector, list) or len(vector) != dim:
                        raise ValueError(f"expected an id and {dim} floats")
                except (ValueError, KeyError, TypeError) as exc:
                    return rows, [f"line {number}: not an embedding record ({exc})"]
                rows += 1
        return rows, []
