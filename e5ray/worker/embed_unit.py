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
at most temporary files, which nothing references and `gc` removes. The files of a unit
being written: `e5ray.worker.unit_writer`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Generator, Iterator
from typing import Any

import pyarrow as pa

from e5ray.corpus.sources import Chunk

# The output's folders (e5ray.output.layout), also named from here by older callers.
from e5ray.output.layout import IDS_DIR as IDS_DIR
from e5ray.output.layout import MARKERS_DIR as MARKERS_DIR
from e5ray.output.layout import REJECTS_DIR as REJECTS_DIR
from e5ray.output.layout import SHARDS_DIR as SHARDS_DIR
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink
from e5ray.store.filesystem import OutputDir
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, hash_columns, hash_scheme_of
from e5ray.worker.unit_rows import ChunkValidator, kept_columns, validated_chunks
from e5ray.worker.unit_writer import UnitWriter


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


def _tokenized_chunks(
    task: ShardTask,
    embedder: Any,
    chunk_rows: int,
    storage_options: dict[str, Any] | None,
    rejects: list[dict[str, Any]],
) -> Iterator[tuple[Chunk, list[int], Any, ChunkValidator]]:
    """Each chunk of the unit with its good rows' positions, their tokens and the unit's
    validator (the reading side: runs ahead in the read-ahead thread)."""
    for chunk, good, validator in validated_chunks(task, chunk_rows, storage_options, rejects):
        tokens = embedder.tokenize([validator.text_for(chunk.texts[p]) for p in good], task.prefix)
        yield chunk, good, tokens, validator


def _output_rows(
    chunk: Chunk, good: list[int], tokens: Any, result: Any, sink: ShardSink, mode: str
) -> tuple[list[Any], dict[str, Any] | None]:
    """The ids and extra columns of a chunk's output rows: one row per document, or per
    window in chunk mode (the window columns, its document's id and kept values)."""
    ids = [chunk.ids[p] for p in good]
    # content hashes name one document's token ids: truncate mode only (e5ray.output.content_hash)
    hashes = hash_columns(sink, tokens.ids) if mode == "truncate" else None
    extra = {**(hashes or {}), **(kept_columns(chunk, good) or {})} or None
    if mode == "chunk" and result.windows is not None:  # one row per window, its text's id
        ids = [ids[d] for d in result.windows.doc]
        extra = {**dict(result.windows.columns()), **_repeated(extra, result.windows.doc)}
    return ids, extra


def _count(stats: ShardStats, documents: int, rows: int, result: Any) -> None:
    """Add one chunk's embedding to the unit's statistics."""
    stats.embedded += documents
    stats.rows += rows
    stats.windows += len(result.windows) if result.windows is not None else documents
    stats.truncated += int(result.truncated.sum())
    count_encoder_run(stats, result)


def count_encoder_run(stats: ShardStats, result: Any) -> None:
    """Add what one encoder run cost (real and padded tokens, seconds) to a unit's statistics."""
    stats.tokens += result.tokens
    stats.padded_tokens += result.padded_tokens
    stats.embed_seconds += result.seconds


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
    writer = UnitWriter(task, embedder, output, sink)
    rejects: list[dict[str, Any]] = []
    mode = getattr(embedder, "long_text", "truncate")
    chunks = _prefetch(_tokenized_chunks(task, embedder, chunk_rows, storage_options, rejects))
    validator: ChunkValidator | None = None
    try:
        for chunk, good, tokens, validator in chunks:
            stats.input_rows += len(chunk.ids)
            result = embedder.run(tokens)
            ids, extra = _output_rows(chunk, good, tokens, result, sink, mode)
            writer.write(validator, chunk, good, ids, result.vectors, extra)
            _count(stats, len(good), len(ids), result)
        files = writer.close(validator)
        reuse = {"rows_reused": 0, "rows_embedded": stats.embedded, "duplicates_folded": 0}
        scheme = hash_scheme_of(sink) if mode == "truncate" else None
        return writer.commit(files, validator, rejects, stats, started, mode, reuse=reuse, hash_scheme=scheme)
    finally:
        chunks.close()  # stops the read-ahead thread if we leave early
        writer.abort()
