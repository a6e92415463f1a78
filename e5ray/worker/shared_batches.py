"""Small units of one task embedded together: shared ONNX batches, one output per unit.

A task may carry up to 256 small units (`e5ray.corpus.units.group_small`: many tiny files).
One unit at a time, each 5-row unit cost ~60 ms in a Ray actor here: a read-ahead
thread, two passes over its file (row reuse), a tokenizer call and ONNX runs of a
handful of rows, a scratch directory, and a Parquet file, sha256, rename, stat and
fsynced marker written while the model waited. Here the small units of a task are read
and validated in threads, tokenised in one call per wave, embedded in the embedder's
own length-sorted token-budget batches across units, and their vectors split back per
unit; each unit's files are then written and committed (`unit_commit.commit_unit`) in threads,
so file writes and fsyncs overlap each other and the next wave's model time.

Invariants, the same as one unit at a time (`shards.embed_shard`):
- one set of output files, one rejects file at most and one marker per unit, named by
  the unit and its content; a unit's marker is written after its own files, and no file
  holds rows of two units, so exactly-once, resume and retries work per unit as before;
- a unit's vectors and ids order do not depend on its neighbours beyond float rounding
  (the attention mask keeps padding out of every row);
- a unit whose data cannot be read fails alone (its ShardFailure) and its neighbours
  commit; rejected rows go to their own unit's rejects file;
- with row reuse on and no previous index (a first run), a unit's duplicate texts are
  folded as `e5ray.worker.reuse_unit` folds them, and its entry counts them the same way.
Units that need more (a reuse index to look rows up in, long-text windows) or that are
big keep the one-at-a-time path. Memory: waves of about `WAVE_BATCHES` of the
embedder's largest batches, of units estimated below `SMALL_UNIT_TOKENS` each. A shared batch has no per-unit padding or
clock: a unit's `padded_tokens`, `embed_seconds` and `seconds` are its wave's, shared
in proportion to the unit's tokens, so their sums over units stay the wave's totals.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from e5ray.corpus.rows import id_type_name
from e5ray.output.content_hash import hash_token_ids
from e5ray.output.dupes import IdCollector
from e5ray.output.manifest import ShardEntry
from e5ray.output.sinks.base import ShardSink
from e5ray.refresh.index import ReadStats
from e5ray.store.filesystem import OutputDir
from e5ray.worker.task import ShardTask
from e5ray.worker.unit_commit import ShardStats, commit_unit, hash_columns, hash_scheme_of
from e5ray.worker.unit_rows import kept_columns, validated_chunks
from e5ray.worker.unit_writer import file_metadata, local_tmp_dir

SMALL_UNIT_TOKENS = 32_768  # estimated tokens (e5ray.corpus.units) up to which a unit joins shared batches
# Rows per wave, in the embedder's largest batches (512 rows on CPU): a wave's units are
# written (threads) while the next wave is embedded. Waves of 256 rows ran a 256-unit task
# in 2.8-3.9 s against 3.5-4.2 s for one wave of 4096 rows (one actor, loaded machine);
# larger waves keep GPU batches full.
WAVE_BATCHES = 4
IO_THREADS = 8  # reads and commits in flight; they mostly wait on files and the store

# Runs one step of a unit under the worker's error rules: the step's value, or the unit's failure.
Attempt = Callable[[ShardTask, Callable[[], Any]], Any]


def can_share(task: ShardTask, embedder: Any) -> bool:
    """Whether `task` may be embedded in batches shared with other units."""
    if getattr(embedder, "long_text", "truncate") != "truncate":
        return False  # windows of long texts: one unit at a time
    if task.reuse_rows and task.reuse_index is not None:
        return False  # looking rows up in a previous version's index reads per unit
    return 0 < task.weight <= SMALL_UNIT_TOKENS


@dataclass
class _Piece:
    """One chunk's good rows: their ids, kept columns, and where their texts are in the unit."""

    ids: list[Any]
    kept: dict[str, Any] | None
    start: int
    stop: int


@dataclass
class ReadUnit:
    """A unit read and validated, waiting for its vectors."""

    task: ShardTask
    texts: list[str]  # good rows, in input order (repaired where the row rules say so)
    pieces: list[_Piece]
    rejects: list[dict[str, Any]]
    input_rows: int
    id_type: pa.DataType
    collected: IdCollector  # e5ray.output.dupes: the unit's ids, for the cross-shard check
    # Filled in by `_embed_wave`:
    vectors: np.ndarray | None = None  # one per good row
    hashes: list[bytes] = field(default_factory=list)
    stats: ShardStats = field(default_factory=ShardStats)
    reuse: dict[str, Any] = field(default_factory=dict)


def read_unit(task: ShardTask, storage_options: dict[str, Any] | None, chunk_rows: int) -> ReadUnit:
    """Read and validate one unit (no model needed: runs in a thread)."""
    rejects: list[dict[str, Any]] = []
    texts: list[str] = []
    pieces: list[_Piece] = []
    input_rows = 0
    id_type = pa.int64()  # a unit with no rows at all
    collected = IdCollector()
    for chunk, good, validator in validated_chunks(task, chunk_rows, storage_options, rejects):
        id_type = validator.id_type()
        input_rows += len(chunk.ids)
        start = len(texts)
        texts.extend(validator.text_for(chunk.texts[p]) for p in good)
        pieces.append(_Piece([chunk.ids[p] for p in good], kept_columns(chunk, good), start, len(texts)))
        collected.add([chunk.ids[p] for p in good], [chunk.start + p for p in good])
    return ReadUnit(task, texts, pieces, rejects, input_rows, id_type, collected)


def _embed_wave(units: list[ReadUnit], embedder: Any) -> None:
    """Tokenise the wave's units (one call per prefix), fold each unit's duplicates when it
    reuses rows, embed every row to embed in shared batches, and hand each unit its vectors."""
    from e5ray.model.embedder import Tokenized

    per_unit: dict[int, tuple[list[list[int]], np.ndarray]] = {}  # by position in `units`
    for prefix in dict.fromkeys(u.task.prefix for u in units):
        members = [i for i, u in enumerate(units) if u.task.prefix == prefix]
        tokens = embedder.tokenize([t for i in members for t in units[i].texts], prefix)
        at = 0
        for i in members:
            n = len(units[i].texts)
            per_unit[i] = (tokens.ids[at : at + n], tokens.truncated[at : at + n])
            at += n
    rows: list[list[int]] = []
    plan: list[tuple[ReadUnit, int, np.ndarray]] = []  # unit, first row in `rows`, each good row's slot
    for i, u in enumerate(units):
        ids, truncated = per_unit[i]
        u.hashes = hash_token_ids(ids)
        if u.task.reuse_rows:  # fold duplicates within the unit, as e5ray.worker.reuse_unit does
            slots: dict[bytes, int] = {}
            row_slots = np.fromiter((slots.setdefault(h, len(slots)) for h in u.hashes), np.int64, len(u.hashes))
            _, first = np.unique(row_slots, return_index=True)
            chosen = [ids[int(r)] for r in first]
        else:
            row_slots, chosen = np.arange(len(ids), dtype=np.int64), list(ids)
        u.stats.truncated = int(np.asarray(truncated).sum())
        u.stats.tokens = sum(len(r) for r in chosen)
        plan.append((u, len(rows), row_slots))
        rows.extend(chosen)
        embedded = len(chosen)
        u.reuse = {"rows_reused": 0, "rows_embedded": embedded, "duplicates_folded": len(ids) - embedded}
        if u.task.reuse_rows:
            u.reuse["lookup"] = ReadStats().to_dict()
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if rows:
        result = embedder.run(Tokenized(ids=rows, lengths=lengths, truncated=np.zeros(len(rows), dtype=bool)))
        vectors, padded, seconds = result.vectors, result.padded_tokens, result.seconds
    else:
        vectors, padded, seconds = np.empty((0, embedder.dim), dtype=np.float32), 0, 0.0
    total = max(1, int(lengths.sum()))
    for u, first_row, row_slots in plan:
        distinct = int(row_slots.max()) + 1 if len(row_slots) else 0
        u.vectors = vectors[first_row : first_row + distinct][row_slots]
        u.stats.padded_tokens = padded * u.stats.tokens // total
        u.stats.embed_seconds = seconds * u.stats.tokens / total


def write_unit(
    unit: ReadUnit, embedder: Any, output: OutputDir, sink: ShardSink, tmp_dir: str | None, seconds: float
) -> ShardEntry:
    """Write one unit's files through `sink` and commit them with its marker (runs in a thread)."""
    task, stats = unit.task, unit.stats
    assert unit.vectors is not None, "embed the unit's wave first"
    try:
        sink.open(tmp_dir, task.stem, unit.id_type, embedder.dim, file_metadata(task, embedder))
        for piece in unit.pieces:
            extra = {**(hash_columns(sink, hashes=unit.hashes[piece.start : piece.stop]) or {}), **(piece.kept or {})}
            sink.write(piece.ids, unit.vectors[piece.start : piece.stop], extra or None)
        files = sink.close()
        stats.input_rows, stats.rejected = unit.input_rows, len(unit.rejects)
        stats.embedded = stats.rows = stats.windows = len(unit.texts)
        return commit_unit(
            task,
            output,
            files,
            unit.rejects,
            stats,
            seconds,
            reuse=unit.reuse,
            hash_scheme=hash_scheme_of(sink),
            collected=unit.collected,
            id_type=id_type_name(unit.id_type),
        )
    finally:
        sink.abort()  # removes what is left locally (nothing, after a commit)


def iter_units_together(
    tasks: list[ShardTask],
    embedder: Any,
    output: OutputDir,
    make_sink: Callable[[], ShardSink],
    attempt: Attempt,
    storage_options: dict[str, Any] | None = None,
    chunk_rows: int = 2048,
) -> Iterator[tuple[int, Any]]:
    """`(position in tasks, result)` as each unit finishes (committed, or failed), in any order.

    Closing the iterator early (the caller stopped, or was interrupted) cancels the reads
    and commits not started yet and waits for the running ones: a unit either commits
    whole (files, then marker) or leaves no marker."""
    tmp_dir = local_tmp_dir(output)  # local: temporary files beside their final names, the commit a rename
    pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="e5ray-unit-io")
    try:

        def read(task: ShardTask) -> Any:
            return attempt(task, lambda: read_unit(task, storage_options, chunk_rows))

        reads = [pool.submit(read, task) for task in tasks]
        wave_rows = WAVE_BATCHES * int(getattr(embedder, "max_batch_rows", 128))
        commits: dict[Future[Any], int] = {}
        failed: list[tuple[int, Any]] = []
        for wave, started in _waves(reads, failed, wave_rows):
            yield from failed
            failed.clear()
            _embed_wave([u for _, u in wave], embedder)
            # The wave's clock (its reads overlap earlier waves), shared by the units' tokens.
            wall = time.perf_counter() - started
            total = sum(u.stats.tokens + 1 for _, u in wave)
            for i, u in wave:
                share = wall * (u.stats.tokens + 1) / total
                commits[pool.submit(attempt, u.task, _writer(u, embedder, output, make_sink, tmp_dir, share))] = i
            for job in [j for j in commits if j.done()]:  # what finished meanwhile, without waiting
                yield commits.pop(job), job.result()
        yield from failed
        for job in as_completed(list(commits)):
            yield commits.pop(job), job.result()
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _writer(
    unit: ReadUnit, embedder: Any, output: OutputDir, make_sink: Callable[[], ShardSink], tmp_dir: str | None, s: float
) -> Callable[[], ShardEntry]:
    return lambda: write_unit(unit, embedder, output, make_sink(), tmp_dir, s)


def _waves(
    reads: list[Future[Any]], failed: list[tuple[int, Any]], wave_rows: int
) -> Iterator[tuple[list[tuple[int, ReadUnit]], float]]:
    """Read units in waves of about `wave_rows` rows, with the time each wave started; a
    unit that failed to read goes to `failed` at once, with its position."""
    wave: list[tuple[int, ReadUnit]] = []
    rows = 0
    started = time.perf_counter()
    for i, future in enumerate(reads):
        got = future.result()
        if not isinstance(got, ReadUnit):
            failed.append((i, got))
            continue
        wave.append((i, got))
        rows += len(got.texts)
        if rows >= wave_rows:
            yield wave, started
            wave, rows, started = [], 0, time.perf_counter()
    if wave:
        yield wave, started
