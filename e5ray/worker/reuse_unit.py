"""Embedding one source shard with row-level reuse: only texts the output does not hold go to the model.

Two passes over the shard, so that memory stays bounded by the shard's distinct vectors
(held in a local memory-mapped file when large), never by the corpus:
1. read, validate, tokenise and hash every row (`e5ray.output.content_hash`); keep one 16-byte
   hash per good row;
2. look the shard's distinct hashes up in the previous version's reuse index
   (`e5ray.refresh.index.lookup`, reading only the buckets and vector ranges it needs);
3. read the shard again: rows whose hash was found take the stored vector; of the rest,
   the first row with each hash is tokenised again and embedded, and later rows with the
   same hash (in any chunk of this shard) take that vector ("duplicates folded"). Rows
   are written in input order, with their hash, through the same commit as `embed_shard`.

Equal texts in *different* shards of one run are each embedded once per shard: folding
across shards would need a shuffle by hash between the units (see README).

Pass 2 must see the very rows pass 1 saw: both passes digest every row's id and text,
and the shard fails (nothing is committed) if the source changed in between.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from e5ray.corpus.rows import id_type_name
from e5ray.corpus.sources import Chunk
from e5ray.errors import CorpusError, DataError, UsageError
from e5ray.output.content_hash import hash_token_ids
from e5ray.output.dupes import IdCollector
from e5ray.output.layout import SHARDS_DIR
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink
from e5ray.refresh.index import ReadStats, load_index, lookup
from e5ray.store.filesystem import OutputDir
from e5ray.store.stream_upload import StreamingUpload, follow_sink
from e5ray.worker.embed_unit import _prefetch, file_metadata
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, commit_unit, hash_columns, hash_scheme_of
from e5ray.worker.unit_rows import ChunkValidator, kept_columns, validated_chunks

log = logging.getLogger("e5ray")
IN_MEMORY_BYTES = 256 << 20  # distinct vectors of one shard above this go to a local memory-mapped file


def _digest_rows(digest: Any, chunk: Chunk) -> None:
    # surrogatepass: texts may hold lone surrogates (invalid UTF-8, rejected per row by e5ray.corpus.rows)
    digest.update(
        json.dumps([chunk.ids, chunk.texts], default=repr, ensure_ascii=False).encode("utf-8", "surrogatepass")
    )


def _store(rows: int, dim: int, directory: str) -> np.ndarray:
    """An (rows, dim) float32 array: in memory when small, else memory-mapped in `directory`."""
    if rows * dim * 4 <= IN_MEMORY_BYTES:
        return np.empty((rows, dim), dtype=np.float32)
    return np.lib.format.open_memmap(os.path.join(directory, "vectors.npy"), "w+", np.float32, (rows, dim))


def embed_shard_reusing_rows(
    task: ShardTask,
    embedder: Any,
    output: OutputDir,
    sink: ShardSink,
    storage_options: dict[str, Any] | None = None,
    chunk_rows: int = 2048,
) -> ShardEntry:
    """`embed_shard` for a task with `reuse_rows`: same files, same entry, plus reuse counts."""
    if getattr(embedder, "long_text", "truncate") != "truncate":
        raise UsageError("row-level reuse needs --long-text truncate (a content hash names one document's token ids)")
    started = time.perf_counter()
    stats = ShardStats()
    rejects: list[dict[str, Any]] = []

    # Pass 1: a hash per good row, in order.
    row_hashes: list[bytes] = []
    first_digest = hashlib.blake2b(digest_size=16)
    for chunk, good, checker in validated_chunks(task, chunk_rows, storage_options, rejects):
        _digest_rows(first_digest, chunk)
        stats.input_rows += len(chunk.ids)
        tokens = embedder.tokenize([checker.text_for(chunk.texts[p]) for p in good], task.prefix)
        stats.truncated += int(tokens.truncated.sum())
        row_hashes.extend(hash_token_ids(tokens.ids))
    slots: dict[bytes, int] = {}
    row_slots = np.fromiter(
        (slots.setdefault(h, len(slots)) for h in row_hashes), dtype=np.int64, count=len(row_hashes)
    )
    distinct = list(slots)

    tmp_dir = None
    if output.is_local:  # temporary files sit beside their final names: the commit is a rename
        tmp_dir = output.path(SHARDS_DIR)
        os.makedirs(tmp_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="e5ray-reuse-") as scratch:
        store = _store(len(distinct), embedder.dim, scratch)
        lookups = ReadStats()
        found = np.zeros(len(distinct), dtype=bool)
        if task.reuse_index is not None and distinct:
            info = load_index(output.uri, task.reuse_index, storage_options)
            lookups.requests += 1  # meta.json
            if info is None:  # collected meanwhile: the next run builds it again
                raise DataError(f"reuse index {task.reuse_index} of {output.uri} is missing or incomplete; run again")
            if info.dim != embedder.dim:
                raise UsageError(
                    f"reuse index {task.reuse_index} holds {info.dim}-dim vectors, the model makes {embedder.dim}"
                )
            found, stats_lookup = lookup(output.uri, info, distinct, store, storage_options)
            lookups.add(stats_lookup)
        ready = found.copy()  # slots whose vector is in `store` (or will be, once their chunk is embedded)

        # Pass 2: write every good row in order; embed each missing hash once.
        second_digest = hashlib.blake2b(digest_size=16)
        cursor = 0
        embedded_slots = 0

        def prepared() -> Iterator[tuple[Chunk, list[int], np.ndarray, np.ndarray, Any, ChunkValidator]]:
            nonlocal cursor
            for chunk, good, validator in validated_chunks(task, chunk_rows, storage_options, None):
                _digest_rows(second_digest, chunk)
                chunk_slots = row_slots[cursor : cursor + len(good)]
                cursor += len(good)
                # The first row of each slot that is neither found nor embedded by an earlier chunk.
                pending, first = np.unique(chunk_slots, return_index=True)
                new = ~ready[pending]
                todo_slots, todo_rows = pending[new], first[new]
                tokens = embedder.tokenize(
                    [validator.text_for(chunk.texts[good[int(r)]]) for r in todo_rows], task.prefix
                )
                ready[todo_slots] = True  # chunks are consumed in order: this one embeds them first
                yield chunk, good, chunk_slots, todo_slots, tokens, validator

        metadata = file_metadata(task, embedder)
        chunks = _prefetch(prepared())
        validator: ChunkValidator | None = None
        opened = False
        streaming: StreamingUpload | None = None  # object stores: the output goes up while it is written
        collected = IdCollector()
        try:
            for chunk, good, chunk_slots, todo_slots, tokens, validator in chunks:
                if len(todo_slots):
                    result = embedder.run(tokens)
                    store[todo_slots] = result.vectors
                    embedded_slots += len(todo_slots)
                    stats.tokens += result.tokens
                    stats.padded_tokens += result.padded_tokens
                    stats.embed_seconds += result.seconds
                if not opened:
                    sink.open(tmp_dir, task.stem, validator.id_type(), embedder.dim, metadata)
                    opened = True
                    streaming = follow_sink(sink.local_path, output, SHARDS_DIR)
                hashes = [distinct[int(s)] for s in chunk_slots]
                extra = {**(hash_columns(sink, hashes=hashes) or {}), **(kept_columns(chunk, good) or {})}
                sink.write([chunk.ids[p] for p in good], store[chunk_slots], extra or None)
                collected.add([chunk.ids[p] for p in good], [chunk.start + p for p in good])  # e5ray.output.dupes
                stats.embedded += len(good)
                stats.rows += len(good)
            if not opened:  # a shard with no rows still gets its (empty) output
                id_type = validator.id_type() if validator else pa.int64()
                sink.open(tmp_dir, task.stem, id_type, embedder.dim, metadata)
            files = sink.close()
            if cursor != len(row_slots) or first_digest.digest() != second_digest.digest():
                raise CorpusError(f"{task.source.uri} changed while it was being embedded; run again")
            stats.rejected = len(rejects)
            reused = int(found[row_slots].sum())
            reuse = {
                "rows_reused": reused,
                "rows_embedded": embedded_slots,
                "duplicates_folded": len(row_slots) - reused - embedded_slots,
                "lookup": lookups.to_dict(),
            }
            seconds = time.perf_counter() - started
            id_type = id_type_name(validator.id_type() if validator else pa.int64())
            return commit_unit(
                task,
                output,
                files,
                rejects,
                stats,
                seconds,
                reuse=reuse,
                hash_scheme=hash_scheme_of(sink),
                collected=collected,
                id_type=id_type,
                streamed=streaming,
            )
        finally:
            chunks.close()  # stops the read-ahead thread if we leave early
            if streaming is not None:
                streaming.abort()  # an unfinished upload is discarded (nothing, after a commit)
            sink.abort()  # removes what is left locally (nothing, after a commit)
