"""One unit's output files while they are written, up to their commit.

Shared by the one-unit paths (`embed_unit.embed_shard`, `reuse_unit.embed_shard_reusing_rows`),
which differ only in where their vectors come from. Invariants:
- the sink opens on the first written chunk, whose validator knows the unit's id type;
  a unit with no rows still gets its (empty) output, with int64 ids;
- on an object store the data file goes up while it is written (e5ray.store.stream_upload);
  on a local output temporary files sit beside their final names, so the commit is a rename;
- every file carries `file_metadata` (the embedding space, the source), so a file alone
  says what its vectors are;
- the ids collected are the unit's documents (not windows), for the cross-shard check
  (e5ray.output.dupes);
- `abort` after the commit removes nothing; before it, it discards the unfinished upload
  and the local files, so a failed unit leaves no file that anything references.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np
import pyarrow as pa

from e5ray.corpus.rows import id_type_name
from e5ray.corpus.sources import Chunk
from e5ray.output.dupes import IdCollector
from e5ray.output.layout import SHARDS_DIR
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink, SinkFile
from e5ray.store.filesystem import OutputDir
from e5ray.store.stream_upload import StreamingUpload, follow_sink
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, commit_unit
from e5ray.worker.unit_rows import ChunkValidator


def file_metadata(task: ShardTask, embedder: Any) -> dict[str, str]:
    """Key-value metadata for every output file: the embedding space and the source."""
    from e5ray import __version__
    from e5ray.model.library_versions import library_versions

    space = embedder.space.with_prefix(task.prefix).to_dict()
    source: dict[str, Any] = {"uri": task.source.uri, "fingerprint": task.source.fingerprint}
    if task.unit is not None:  # a file's part: which rows or bytes of the source it holds
        source["unit"] = task.unit.to_dict()
    return {
        "e5ray.space": json.dumps(space, sort_keys=True),
        "e5ray.source": json.dumps(source),
        "e5ray.version": __version__,
        # Where the model ran: a node installed apart from the driver records its own.
        "e5ray.libraries": json.dumps(library_versions(), sort_keys=True),
    }


def local_tmp_dir(output: OutputDir) -> str | None:
    """Where a sink writes its temporary files: beside their final names for a local output
    (so the commit is a rename), the system's temporary folder (None) for an object store."""
    if not output.is_local:
        return None
    tmp_dir = output.path(SHARDS_DIR)
    os.makedirs(tmp_dir, exist_ok=True)
    return tmp_dir


class UnitWriter:
    """Writes one unit's rows through `sink` and commits them to `output`."""

    def __init__(self, task: ShardTask, embedder: Any, output: OutputDir, sink: ShardSink) -> None:
        self.task, self.output, self.sink = task, output, sink
        self.dim: int = embedder.dim
        self.tmp_dir = local_tmp_dir(output)
        self.metadata = file_metadata(task, embedder)
        self.collected = IdCollector()  # e5ray.output.dupes: the ids this unit embedded
        self.streaming: StreamingUpload | None = None  # object stores: the output goes up while it is written
        self._opened = False

    def write(
        self,
        validator: ChunkValidator,
        chunk: Chunk,
        good: list[int],
        ids: list[Any],
        vectors: np.ndarray,
        extra: dict[str, Any] | None,
    ) -> None:
        """Write a chunk's output rows (`ids`, `vectors`, `extra` columns) and collect the ids
        of its embedded documents (`good`: their positions in `chunk`)."""
        self.write_rows(validator, ids, vectors, extra)
        self.collect(chunk, good)

    def write_rows(
        self, validator: ChunkValidator, ids: list[Any], vectors: np.ndarray, extra: dict[str, Any] | None
    ) -> None:
        """Append output rows through the sink (one Parquet row group per call), opening it first."""
        if not self._opened:
            self.sink.open(self.tmp_dir, self.task.stem, validator.id_type(), self.dim, self.metadata)
            self._opened = True
            self.streaming = follow_sink(self.sink.local_path, self.output, SHARDS_DIR)
        self.sink.write(ids, vectors, extra)

    def collect(self, chunk: Chunk, good: list[int]) -> None:
        """Collect the ids of a chunk's embedded documents (`good`: their positions in `chunk`)
        with their input rows, for the cross-shard check; where the file puts them does not matter."""
        self.collected.add([chunk.ids[p] for p in good], [chunk.start + p for p in good])  # documents, not windows

    def close(self, validator: ChunkValidator | None) -> list[SinkFile]:
        """The sink's finished files; a unit with no rows still gets its (empty) output."""
        if not self._opened:
            id_type = validator.id_type() if validator else pa.int64()
            self.sink.open(self.tmp_dir, self.task.stem, id_type, self.dim, self.metadata)
        return self.sink.close()

    def commit(
        self,
        files: list[SinkFile],
        validator: ChunkValidator | None,
        rejects: list[dict[str, Any]],
        stats: ShardStats,
        started: float,
        mode: str = "truncate",
        reuse: dict[str, Any] | None = None,
        hash_scheme: str | None = None,
    ) -> ShardEntry:
        """Commit the closed `files` with the unit's rejects, ids and marker (e5ray.worker.unit_commit)."""
        stats.rejected = len(rejects)
        id_type = id_type_name(validator.id_type() if validator else pa.int64())
        seconds = time.perf_counter() - started
        return commit_unit(
            self.task,
            self.output,
            files,
            rejects,
            stats,
            seconds,
            mode,
            reuse=reuse,
            hash_scheme=hash_scheme,
            collected=self.collected,
            id_type=id_type,
            streamed=self.streaming,
        )

    def abort(self) -> None:
        """Discard what is not committed (nothing is left after a commit)."""
        if self.streaming is not None:
            self.streaming.abort()  # an unfinished upload is discarded (nothing, after a commit)
        self.sink.abort()  # removes what is left locally (nothing, after a commit)
