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
   are written with their hash, through the same commit as `embed_shard`, carried rows
   (found in the index) and new rows in row groups of their own, each kind in input order
   (`e5ray.worker.row_kinds`: the change feed then decodes the new rows' vectors only).

Equal texts in *different* shards of one run are each embedded once per shard: folding
across shards would need a shuffle by hash between the units (see docs/refresh.md).

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from e5ray.corpus.sources import Chunk
from e5ray.errors import CorpusError, DataError, UsageError
from e5ray.output.content_hash import hash_token_ids
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink
from e5ray.refresh.index import ReadStats, load_index, lookup
from e5ray.store.filesystem import OutputDir
from e5ray.worker.embed_unit import _prefetch, count_encoder_run
from e5ray.worker.row_kinds import KindSeparatingWriter
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, hash_columns, hash_scheme_of
from e5ray.worker.unit_rows import ChunkValidator, kept_columns, validated_chunks
from e5ray.worker.unit_writer import UnitWriter

log = logging.getLogger("e5ray")
IN_MEMORY_BYTES = 256 << 20  # distinct vectors of one shard above this go to a local memory-mapped file

# What pass 2 reads ahead for each chunk: the chunk, its good rows, their slots, the slots
# this chunk embeds first, their tokens, and the unit's validator.
_Planned = tuple[Chunk, list[int], np.ndarray, np.ndarray, Any, ChunkValidator]


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


@dataclass
class _FirstPass:
    """What pass 1 learnt: each good row's slot (the index of its hash among the shard's
    distinct hashes), the distinct hashes, and a digest of every row read."""

    row_slots: np.ndarray
    distinct: list[bytes]
    digest: bytes


def _first_pass(
    task: ShardTask,
    embedder: Any,
    chunk_rows: int,
    storage_options: dict[str, Any] | None,
    rejects: list[dict[str, Any]],
    stats: ShardStats,
) -> _FirstPass:
    """Pass 1: read, validate, tokenise and hash every row; rejected rows go to `rejects`."""
    row_hashes: list[bytes] = []
    digest = hashlib.blake2b(digest_size=16)
    for chunk, good, checker in validated_chunks(task, chunk_rows, storage_options, rejects):
        _digest_rows(digest, chunk)
        stats.input_rows += len(chunk.ids)
        tokens = embedder.tokenize([checker.text_for(chunk.texts[p]) for p in good], task.prefix)
        stats.truncated += int(tokens.truncated.sum())
        row_hashes.extend(hash_token_ids(tokens.ids))
    slots: dict[bytes, int] = {}
    row_slots = np.fromiter(
        (slots.setdefault(h, len(slots)) for h in row_hashes), dtype=np.int64, count=len(row_hashes)
    )
    return _FirstPass(row_slots, list(slots), digest.digest())


def _look_up(
    task: ShardTask,
    embedder: Any,
    output: OutputDir,
    distinct: list[bytes],
    store: np.ndarray,
    storage_options: dict[str, Any] | None,
) -> tuple[np.ndarray, ReadStats]:
    """Step 2: which distinct hashes the previous version's index holds (their vectors go to
    `store`), and what finding them read."""
    lookups = ReadStats()
    found = np.zeros(len(distinct), dtype=bool)
    if task.reuse_index is None or not distinct:
        return found, lookups
    info = load_index(output.uri, task.reuse_index, storage_options)
    lookups.requests += 1  # meta.json
    if info is None:  # collected meanwhile: the next run builds it again
        raise DataError(f"reuse index {task.reuse_index} of {output.uri} is missing or incomplete; run again")
    if info.dim != embedder.dim:
        raise UsageError(f"reuse index {task.reuse_index} holds {info.dim}-dim vectors, the model makes {embedder.dim}")
    found, stats_lookup = lookup(output.uri, info, distinct, store, storage_options)
    lookups.add(stats_lookup)
    return found, lookups


class _SecondPass:
    """Pass 2's reading side, run ahead in the read-ahead thread: each chunk's slots, and the
    slots it embeds first (neither found in the index nor embedded by an earlier chunk)."""

    def __init__(self, first: _FirstPass, found: np.ndarray) -> None:
        self.first = first
        self.ready = found.copy()  # slots whose vector is in the store (or will be, once their chunk is embedded)
        self.digest = hashlib.blake2b(digest_size=16)
        self.cursor = 0

    def chunks(
        self, task: ShardTask, embedder: Any, chunk_rows: int, storage_options: dict[str, Any] | None
    ) -> Iterator[_Planned]:
        for chunk, good, validator in validated_chunks(task, chunk_rows, storage_options, None):
            _digest_rows(self.digest, chunk)
            chunk_slots = self.first.row_slots[self.cursor : self.cursor + len(good)]
            self.cursor += len(good)
            # The first row of each slot that is neither found nor embedded by an earlier chunk.
            pending, first = np.unique(chunk_slots, return_index=True)
            new = ~self.ready[pending]
            todo_slots, todo_rows = pending[new], first[new]
            tokens = embedder.tokenize([validator.text_for(chunk.texts[good[int(r)]]) for r in todo_rows], task.prefix)
            self.ready[todo_slots] = True  # chunks are consumed in order: this one embeds them first
            yield chunk, good, chunk_slots, todo_slots, tokens, validator

    def saw_what_pass_one_saw(self) -> bool:
        """Both passes read the very same rows (the source did not change in between)."""
        return self.cursor == len(self.first.row_slots) and self.digest.digest() == self.first.digest


def _embed_missing(embedder: Any, tokens: Any, todo_slots: np.ndarray, store: np.ndarray, stats: ShardStats) -> None:
    """Embed the rows of `todo_slots` once each, into their slots of `store`."""
    result = embedder.run(tokens)
    store[todo_slots] = result.vectors
    count_encoder_run(stats, result)


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
    first = _first_pass(task, embedder, chunk_rows, storage_options, rejects, stats)
    writer = UnitWriter(task, embedder, output, sink)
    rows = KindSeparatingWriter(writer, chunk_rows)  # no row group mixes carried and new rows
    with tempfile.TemporaryDirectory(prefix="e5ray-reuse-") as scratch:
        store = _store(len(first.distinct), embedder.dim, scratch)
        found, lookups = _look_up(task, embedder, output, first.distinct, store, storage_options)
        # Pass 2: write every good row (carried and new rows in row groups of their own); embed each missing hash once.
        second = _SecondPass(first, found)
        chunks = _prefetch(second.chunks(task, embedder, chunk_rows, storage_options))
        validator: ChunkValidator | None = None
        embedded_slots = 0
        try:
            for chunk, good, chunk_slots, todo_slots, tokens, validator in chunks:
                if len(todo_slots):
                    _embed_missing(embedder, tokens, todo_slots, store, stats)
                    embedded_slots += len(todo_slots)
                hashes = [first.distinct[int(s)] for s in chunk_slots]
                extra = {**(hash_columns(sink, hashes=hashes) or {}), **(kept_columns(chunk, good) or {})}
                rows.write(validator, chunk, good, store[chunk_slots], extra or None, found[chunk_slots])
                stats.embedded += len(good)
                stats.rows += len(good)
            rows.flush(validator)
            files = writer.close(validator)
            if not second.saw_what_pass_one_saw():
                raise CorpusError(f"{task.source.uri} changed while it was being embedded; run again")
            reused = int(found[first.row_slots].sum())
            reuse = {
                "rows_reused": reused,
                "rows_embedded": embedded_slots,
                "duplicates_folded": len(first.row_slots) - reused - embedded_slots,
                "lookup": lookups.to_dict(),
            }
            return writer.commit(
                files, validator, rejects, stats, started, reuse=reuse, hash_scheme=hash_scheme_of(sink)
            )
        finally:
            chunks.close()  # stops the read-ahead thread if we leave early
            writer.abort()
