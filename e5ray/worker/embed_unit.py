"""Embedding shards: the output files of one work unit, written once, completely.

A task is one unit (`e5ray.corpus.units`): a whole source shard, or a range of it. For a unit
the worker streams chunks, rejects rows that cannot be embedded (`e5ray.worker.unit_rows`:
recorded with the reason, never dropped silently), embeds the rest, writes through the
output's sink (`e5ray.output.sinks`) and commits (`e5ray.worker.unit_commit`):
- `shards/<name>[-<range>]-<key>-<sha12><suffix>`: the sink's files (`<range>`, e.g.
  `rg0-8` or `b0-4194304`, only for a unit that is part of a file) (Parquet: `.parquet`
  with columns `id` and `embedding`, and in long-text chunk mode the window columns after
  them: e5ray.model.windows, one row per window, the id repeated); each name carries a prefix
  of its own sha256, so a name always denotes one content;
- `rejects/<name>-<key>-<sha12>.rejects.jsonl` when rows were rejected;
- `ids/<name>-<key>-<sha12>.ids.pq`: the ids the unit embedded, hashed, for the
  cross-shard duplicate check (`e5ray.output.dupes`);
- `markers/<name>-<key>.done.json` last: the completion marker that a resumed run
  checks and reuses. `<key>` hashes the source fingerprint, the embedding space, the
  columns read and the output format, so a marker is only ever reused for the very
  same work. Every unit of a source shares the source's key (the range is in the name),
  so a refresh decides per source whether all its units are carried. `shards/` holds
  only data files, so a reader pointed at it finds nothing else (outputs written before
  this layout kept markers and rejects in `shards/`; those are still read: see
  `ShardTask.legacy_marker_path` and `e5ray.job.resume`). Kept input columns
  (`--keep-columns`) are written beside `id` and `embedding`, and every file carries the
  embedding space in its key-value metadata (`e5ray.space`), so a file alone says what
  its vectors are.

Files reach their final names atomically (rename or one PUT), so a killed worker leaves
at most temporary files, which nothing references and `gc` removes.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pyarrow as pa

from e5ray.corpus.rows import id_type_name
from e5ray.corpus.sources import Chunk
from e5ray.output.dupes import IdCollector

# The output's folders (e5ray.output.layout), also named from here by older callers.
from e5ray.output.layout import IDS_DIR as IDS_DIR
from e5ray.output.layout import MARKERS_DIR as MARKERS_DIR
from e5ray.output.layout import REJECTS_DIR as REJECTS_DIR
from e5ray.output.layout import SHARDS_DIR as SHARDS_DIR
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink
from e5ray.store.filesystem import OutputDir
from e5ray.store.stream_upload import StreamingUpload, follow_sink
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, commit_unit, hash_columns, hash_scheme_of
from e5ray.worker.unit_rows import ChunkValidator, kept_columns, validated_chunks


def _prefetch(items: Iterator[Any], depth: int = 1) -> Generator[Any, None, None]:
    """Run the producer in a thread, `depth` items ahead, so reading and tokenising the
    next chunk overlaps the ONNX run of this one (both release the GIL)."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put(item)
            q.put(done)
        except BaseException as exc:  # handed to the consumer, re-raised there
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        # The consumer stopped early (an error downstream): unblock the producer and let
        # it finish, so no thread keeps the shard open in a long-lived actor.
        stop.set()
        while thread.is_alive():
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass


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


def _repeated(kept: dict[str, Any] | None, rows: Any) -> dict[str, Any]:
    """Kept columns with each document's value repeated for each of its windows (`rows`:
    the document of every window)."""
    if not kept:
        return {}
    index = pa.array(rows, type=pa.int64())
    return {
        name: values.take(index) if isinstance(values, pa.Array) else [values[d] for d in rows]
        for name, values in kept.items()
    }


def embed_shard(
    task: ShardTask,
    embedder: Any,
    output: OutputDir,
    sink: ShardSink,
    storage_options: dict[str, Any] | None = None,
    chunk_rows: int = 2048,
) -> ShardEntry:
    """Embed one source shard through `sink` and commit its files to `output`; returns its entry."""
    stats = ShardStats()
    started = time.perf_counter()
    # Local outputs: temporary files sit beside their final names, so the commit is a rename.
    tmp_dir = None
    if output.is_local:
        tmp_dir = output.path(SHARDS_DIR)
        os.makedirs(tmp_dir, exist_ok=True)
    rejects: list[dict[str, Any]] = []
    validator: ChunkValidator | None = None
    opened = False
    streaming: StreamingUpload | None = None  # object stores: the output goes up while it is written
    collected = IdCollector()  # e5ray.output.dupes: the ids this shard embedded, for the cross-shard check
    metadata = file_metadata(task, embedder)
    mode = getattr(embedder, "long_text", "truncate")

    def prepared() -> Iterator[tuple[Chunk, list[int], Any]]:
        nonlocal validator
        for chunk, good, current in validated_chunks(task, chunk_rows, storage_options, rejects):
            validator = current  # read after the loop: the shard's id type
            tokens = embedder.tokenize([current.text_for(chunk.texts[p]) for p in good], task.prefix)
            yield chunk, good, tokens

    chunks = _prefetch(prepared())
    try:
        for chunk, good, tokens in chunks:
            stats.input_rows += len(chunk.ids)
            result = embedder.run(tokens)
            assert validator is not None
            if not opened:
                sink.open(tmp_dir, task.stem, validator.id_type(), embedder.dim, metadata)
                opened = True
                streaming = follow_sink(sink.local_path, output, SHARDS_DIR)
            ids = [chunk.ids[p] for p in good]
            # content hashes name one document's token ids: truncate mode only (e5ray.output.content_hash)
            hashes = hash_columns(sink, tokens.ids) if mode == "truncate" else None
            extra = {**(hashes or {}), **(kept_columns(chunk, good) or {})} or None
            if mode == "chunk" and result.windows is not None:  # one row per window, its text's id
                ids = [ids[d] for d in result.windows.doc]
                extra = {**dict(result.windows.columns()), **_repeated(extra, result.windows.doc)}
            sink.write(ids, result.vectors, extra)
            collected.add([chunk.ids[p] for p in good], [chunk.start + p for p in good])  # documents, not windows
            stats.embedded += len(good)
            stats.rows += len(ids)
            stats.windows += len(result.windows) if result.windows is not None else len(good)
            stats.truncated += int(result.truncated.sum())
            stats.tokens += result.tokens
            stats.padded_tokens += result.padded_tokens
            stats.embed_seconds += result.seconds
        if not opened:  # a shard with no rows still gets its (empty) output
            sink.open(tmp_dir, task.stem, validator.id_type() if validator else pa.int64(), embedder.dim, metadata)
        files = sink.close()
        stats.rejected = len(rejects)
        id_type = id_type_name(validator.id_type() if validator else pa.int64())
        reuse = {"rows_reused": 0, "rows_embedded": stats.embedded, "duplicates_folded": 0}
        seconds = time.perf_counter() - started
        scheme = hash_scheme_of(sink) if mode == "truncate" else None
        return commit_unit(
            task,
            output,
            files,
            rejects,
            stats,
            seconds,
            mode,
            reuse=reuse,
            hash_scheme=scheme,
            collected=collected,
            id_type=id_type,
            streamed=streaming,
        )
    finally:
        chunks.close()  # stops the read-ahead thread if we leave early
        if streaming is not None:
            streaming.abort()  # an unfinished upload is discarded (nothing, after a commit)
        sink.abort()  # removes what is left locally (nothing, after a commit)
