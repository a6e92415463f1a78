"""The sink seam: how one shard's vectors become files, and how such a file is checked.

A sink writes the vectors of one source shard to local temporary files; the worker
then names each file by its content hash, moves it to the output atomically and
records it in the shard entry (`FileRef`). So a sink never deals with object stores,
names or commits, and a sink that writes several files fits as well as one that
writes a single file. `check` is the sink's half of `e5ray verify`.

The table names each sink by a dotted path (the name is what the manifest records as
`output.format`); a new sink is one new module plus one line here.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import pyarrow as pa

SINKS: dict[str, str] = {
    "parquet": "e5ray.output.sinks.parquet:ParquetSink",
    "jsonl": "e5ray.output.sinks.jsonl:JsonlSink",
}


@dataclass(frozen=True)
class SinkFile:
    """A finished local file: where it is, the suffix its final name takes, its rows, and
    its sha256 when the sink hashed the bytes as it wrote them (else the commit reads it back)."""

    local_path: str
    suffix: str
    rows: int
    sha256: str | None = None


class HashingFile(io.RawIOBase):
    """A new file that hashes its bytes on their way to disk, and is synced when closed.

    The commit names a file by its sha256: hashing while writing saves reading every file
    back, which was a third of a small unit's file work. Closing flushes and fsyncs it, so
    a marker written after the commit never names a file that a crash could still lose.
    """

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._digest = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:  # its descriptor's number may already belong to another file
            raise ValueError("write to a closed HashingFile")
        view = memoryview(data).cast("B")
        written = 0
        while written < len(view):  # os.write may write less than asked
            written += os.write(self._fd, view[written:])
        self._digest.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def close(self) -> None:
        if not self.closed:
            try:
                os.fsync(self._fd)
            finally:
                os.close(self._fd)
        super().close()

    def discard(self) -> None:
        """Close without syncing (the file is about to be removed)."""
        if not self.closed:
            os.close(self._fd)
        super().close()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


class ShardSink(Protocol):
    """Writes one shard. Call order: open, write (any number of times), close. The worker
    calls abort after every shard: committed files have been moved away by then, and
    whatever is still there (an unfinished shard, or one whose commit failed) goes."""

    format: ClassVar[str]

    def open(
        self, directory: str | None, stem: str, id_type: pa.DataType, dim: int, metadata: dict[str, str] | None = None
    ) -> None:
        """Start the shard's files in `directory` (None: the system's temporary directory);
        `metadata` (the embedding space, the source) goes into formats that hold key-value metadata."""

    def write(self, ids: list[Any], vectors: np.ndarray, extra: dict[str, Any] | None = None) -> None:
        """Append rows: `ids[i]` has vector `vectors[i]`; `extra` holds further columns by name
        (lists, or Arrow arrays whose types are kept)."""

    @property
    def local_path(self) -> str | None:
        """The local file being written, between open and close (appended to, never rewritten:
        `e5ray.store.stream_upload` sends its bytes while it grows); None before open."""

    def close(self) -> list[SinkFile]:
        """Finish the files; each is complete and will not be touched again."""

    def abort(self) -> None:
        """Remove the local files this sink made that are still there, finished or not."""

    @classmethod
    def check(cls, fs: Any, path: str, dim: int) -> tuple[int, list[str]]:
        """Rows in the written file at `path` and every problem with it (empty: sound)."""


def get_sink(name: str) -> type[ShardSink]:
    """The sink class registered as `name`."""
    try:
        target = SINKS[name]
    except KeyError:
        from e5ray.errors import UsageError

        raise UsageError(f"unknown output format {name!r}; valid: {', '.join(SINKS)}") from None
    module, attr = target.split(":")
    sink: type[ShardSink] = getattr(importlib.import_module(module), attr)
    return sink
