"""Embedding shards: the output files of one work unit, written once, completely.

A task is one unit (`e5ray.units`): a whole source shard, or a range of it. For a unit
the worker streams chunks, rejects rows that cannot be embedded
(recorded with the reason, never dropped silently), embeds the rest, and writes through
the output's sink (`e5ray.sinks`):
- `shards/<name>[-<range>]-<key>-<sha12><suffix>`: the sink's files (`<range>`, e.g.
  `rg0-8` or `b0-4194304`, only for a unit that is part of a file) (Parquet: `.parquet`
  with columns `id` and `embedding`, and in long-text chunk mode the window columns after
  them: e5ray.windows, one row per window, the id repeated); each name carries a prefix
  of its own sha256, so a name always denotes one content;
- `rejects/<name>-<key>-<sha12>.rejects.jsonl` when rows were rejected;
- `ids/<name>-<key>-<sha12>.ids.pq`: the ids the unit embedded, hashed, for the
  cross-shard duplicate check (`e5ray.dupes`);
- `markers/<name>-<key>.done.json` last: the completion marker that a resumed run
  checks and reuses. `<key>` hashes the source fingerprint, the embedding space, the
  columns read and the output format, so a marker is only ever reused for the very
  same work. Every unit of a source shares the source's key (the range is in the name),
  so a refresh decides per source whether all its units are carried. `shards/` holds
  only data files, so a reader pointed at it finds nothing else (outputs written before
  this layout kept markers and rejects in `shards/`; those are still read: see
  `ShardTask.legacy_marker_path` and `e5ray.resume`). Kept input columns
  (`--keep-columns`) are written beside `id` and `embedding`, and every file carries the
  embedding space in its key-value metadata (`e5ray.space`), so a file alone says what
  its vectors are.

Files reach their final names atomically (rename or one PUT), so a killed worker leaves
at most temporary files, which nothing references and `gc` removes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import queue
import re
import tempfile
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa

from e5ray.content_hash import HASH_COLUMN, SCHEME, hash_array, hash_token_ids
from e5ray.corpus import Chunk, SourceShard, read_chunks
from e5ray.dupes import IDS_SUFFIX, IdCollector

# The output's folders (e5ray.layout), also named from here by older callers.
from e5ray.layout import IDS_DIR as IDS_DIR
from e5ray.layout import MARKERS_DIR as MARKERS_DIR
from e5ray.layout import REJECTS_DIR as REJECTS_DIR
from e5ray.layout import SHARDS_DIR as SHARDS_DIR
from e5ray.manifest import DEFAULT_OUTPUT_FORMAT, FileRef, ShardEntry
from e5ray.rows import id_problem, id_type_name, normalise_id, repair_text, unicode_problem
from e5ray.sinks.base import ShardSink, SinkFile
from e5ray.space import Prefix
from e5ray.storage import OutputDir, sha256_of
from e5ray.units import UnitRange


@dataclass(frozen=True)
class ShardTask:
    """Everything a worker needs to embed one unit (plain data, picklable)."""

    source: SourceShard
    space_fingerprint: str
    id_column: str = "id"
    text_column: str = "text"
    prefix: Prefix = "passage"
    output_format: str = DEFAULT_OUTPUT_FORMAT
    on_invalid_utf8: str = "reject"  # e5ray.rows
    id_type: str = "auto"  # e5ray.rows
    unit: UnitRange | None = None  # None: the whole source shard
    weight: int = 0  # estimated tokens, to order and group tasks (not part of the key)
    keep_columns: tuple[str, ...] = ()  # input columns copied into the output
    # Row-level reuse (e5ray.reuse_unit); not part of `key`: the output is the same either way.
    reuse_rows: bool = False  # fold duplicate texts and look rows up in `reuse_index`
    reuse_index: str | None = None  # the previous version's reuse index, relative to the output root

    @property
    def key(self) -> str:
        parts = [
            self.source.uri,
            self.source.fingerprint,
            self.space_fingerprint,
            self.id_column,
            self.text_column,
            self.prefix,
        ]
        # Parquet keys stay what they were before sinks had names, so older outputs are reused.
        if self.output_format != DEFAULT_OUTPUT_FORMAT:
            parts.append(self.output_format)
        # Row rules change the output only when not the defaults; default keys stay as they were.
        if self.on_invalid_utf8 != "reject":
            parts.append(f"utf8={self.on_invalid_utf8}")
        if self.id_type != "auto":
            parts.append(f"ids={self.id_type}")
        if self.keep_columns:  # other columns, other files (and keys of runs without them unchanged)
            parts.append("keep:" + ",".join(self.keep_columns))
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.to_dict(),
            "space_fingerprint": self.space_fingerprint,
            "id_column": self.id_column,
            "text_column": self.text_column,
            "prefix": self.prefix,
            "output_format": self.output_format,
            "on_invalid_utf8": self.on_invalid_utf8,
            "id_type": self.id_type,
            "unit": self.unit.to_dict() if self.unit else None,
            "weight": self.weight,
            "keep_columns": list(self.keep_columns),
            "reuse_rows": self.reuse_rows,
            "reuse_index": self.reuse_index,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ShardTask:
        return cls(
            **{
                **data,
                "source": SourceShard.from_dict(data["source"]),
                "unit": UnitRange.from_dict(data.get("unit")),
                "keep_columns": tuple(data.get("keep_columns", ())),
            }
        )

    def with_unit(self, unit: UnitRange | None, weight: int) -> ShardTask:
        return dataclasses.replace(self, unit=unit, weight=weight)

    @property
    def stem(self) -> str:
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", self.source.relpath)
        if self.unit is not None:
            name = f"{name}-{self.unit.label}"
        return f"{name}-{self.key}"

    @property
    def marker_path(self) -> str:
        return f"{MARKERS_DIR}/{self.stem}.done.json"

    @property
    def legacy_marker_path(self) -> str:
        """Where outputs written before the markers/ folder keep this task's marker."""
        return f"{SHARDS_DIR}/{self.stem}.done.json"


class ChunkValidator:
    """Decides, row by row, what can be embedded; remembers ids to catch duplicates."""

    def __init__(self, declared_id_type: pa.DataType | None = None, on_invalid_utf8: str = "reject") -> None:
        self.seen: set[Any] = set()
        self.id_kind: type | None = None  # JSONL: the Python type of the shard's first good id
        self.declared = declared_id_type
        self.repair = on_invalid_utf8 == "replace"

    def text_for(self, text: str) -> str:
        """The text to embed for a row that passed `check` (repaired under --on-invalid-utf8 replace)."""
        return repair_text(text) if self.repair else text

    def check(self, id_value: Any, text: Any) -> str | None:
        """None if the row can be embedded, else the reason it cannot."""
        if id_value is None:
            return "null id"
        if self.declared is None:
            kind = int if isinstance(id_value, int) and not isinstance(id_value, bool) else type(id_value)
            if kind not in (int, str):
                return f"id {id_value!r:.60} is a {type(id_value).__name__}; ids must be integers or strings"
            if self.id_kind is None:
                self.id_kind = kind
            elif kind is not self.id_kind:
                return f"id {id_value!r:.60} is a {kind.__name__}, but this shard's ids are {self.id_kind.__name__}"
        if text is None:
            return "null text"
        if not isinstance(text, str):
            return f"text is a {type(text).__name__}, not a string"
        if not text.strip():
            return "empty text"
        problem = id_problem(id_value) or (None if self.repair else unicode_problem(text))
        if problem:
            return problem
        hashable = id_value if not isinstance(id_value, (list, dict)) else json.dumps(id_value, sort_keys=True)
        if hashable in self.seen:
            return "duplicate id in this shard"
        self.seen.add(hashable)
        return None

    def id_type(self) -> pa.DataType:
        if self.declared is not None:
            return self.declared
        return pa.string() if self.id_kind is str else pa.int64()


@dataclass
class ShardStats:
    input_rows: int = 0
    embedded: int = 0  # documents
    rows: int = 0  # output rows: one per window in chunk mode, else one per document
    windows: int = 0
    rejected: int = 0
    truncated: int = 0
    tokens: int = 0
    padded_tokens: int = 0
    embed_seconds: float = 0.0


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

    space = embedder.space.with_prefix(task.prefix).to_dict()
    source: dict[str, Any] = {"uri": task.source.uri, "fingerprint": task.source.fingerprint}
    if task.unit is not None:  # a file's part: which rows or bytes of the source it holds
        source["unit"] = task.unit.to_dict()
    return {
        "e5ray.space": json.dumps(space, sort_keys=True),
        "e5ray.source": json.dumps(source),
        "e5ray.version": __version__,
    }


def kept_columns(chunk: Chunk, good: list[int]) -> dict[str, Any] | None:
    """The kept columns' values of the rows that were embedded."""
    if not chunk.extra:
        return None
    index = pa.array(good, type=pa.int64())
    return {
        name: values.take(index) if isinstance(values, pa.Array) else [values[p] for p in good]
        for name, values in chunk.extra.items()
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, str):  # lone surrogates (invalid UTF-8) cannot be written as UTF-8: escape them
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)


def validated_chunks(
    task: ShardTask, chunk_rows: int, storage_options: dict[str, Any] | None, rejects: list[dict[str, Any]] | None
) -> Iterator[tuple[Chunk, list[int], ChunkValidator]]:
    """(chunk, positions of its good rows, validator) for each chunk of the task's unit;
    rejected rows go to `rejects` (when given) with their location and reason."""
    validator: ChunkValidator | None = None
    chunks = read_chunks(
        task.source, task.id_column, task.text_column, chunk_rows, storage_options, task.unit, task.keep_columns
    )
    for chunk in chunks:
        if task.id_type == "string":  # e5ray.rows: every id as text
            chunk.ids = [normalise_id(i, "string") for i in chunk.ids]
            chunk.id_type = pa.string() if chunk.id_type is not None else None
        if validator is None:
            validator = ChunkValidator(chunk.id_type, task.on_invalid_utf8)
        good: list[int] = []
        for pos, (id_value, text) in enumerate(zip(chunk.ids, chunk.texts, strict=False)):
            reason = chunk.errors.get(pos) or validator.check(id_value, text)
            if reason is None:
                good.append(pos)
            elif rejects is not None:
                rejects.append({**chunk.locate(pos), "id": _json_safe(id_value), "reason": reason})
        yield chunk, good, validator


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
    collected = IdCollector()  # e5ray.dupes: the ids this shard embedded, for the cross-shard check
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
            ids = [chunk.ids[p] for p in good]
            # content hashes name one document's token ids: truncate mode only (e5ray.content_hash)
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
        return _commit(
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
        )
    finally:
        chunks.close()  # stops the read-ahead thread if we leave early
        sink.abort()  # removes what is left locally (nothing, after a commit)


def hash_columns(
    sink: ShardSink, token_ids: list[list[int]] | None = None, hashes: list[bytes] | None = None
) -> dict[str, Any] | None:
    """The content_hash column for `sink` (of `hashes`, or of the rows' `token_ids`), or
    None for a sink whose files do not carry hashes (row-level refresh reads Parquet only)."""
    if sink.format != "parquet":
        return None
    return {HASH_COLUMN: hash_array(hashes if hashes is not None else hash_token_ids(token_ids or []))}


def hash_scheme_of(sink: ShardSink) -> str | None:
    return SCHEME if sink.format == "parquet" else None


def _commit(
    task: ShardTask,
    output: OutputDir,
    files: list[SinkFile],
    rejects: list[dict[str, Any]],
    stats: ShardStats,
    seconds: float,
    mode: str = "truncate",
    reuse: dict[str, Any] | None = None,
    hash_scheme: str | None = None,
    collected: IdCollector | None = None,  # e5ray.dupes: the ids embedded, for the cross-shard check
    id_type: str | None = None,  # e5ray.rows
) -> ShardEntry:
    local = fsspec.filesystem("file")
    refs = []
    for file in files:
        sha = sha256_of(local, file.local_path)
        size = os.path.getsize(file.local_path)
        name = f"{SHARDS_DIR}/{task.stem}-{sha[:12]}{file.suffix}"
        output.upload(file.local_path, name)
        refs.append(FileRef(name, size, sha, file.rows, output.stamp(name)))
    rejects_ref = None
    if rejects:
        blob = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rejects).encode()
        rejects_name = f"{REJECTS_DIR}/{task.stem}-{refs[0].sha256[:12]}.rejects.jsonl"
        output.write_atomic(rejects_name, blob)
        sha = hashlib.sha256(blob).hexdigest()
        rejects_ref = FileRef(rejects_name, len(blob), sha, len(rejects), output.stamp(rejects_name))
    ids_ref = _commit_ids(output, f"{IDS_DIR}/{task.stem}-{refs[0].sha256[:12]}", collected) if collected else None
    entry = ShardEntry(
        files=tuple(refs),
        rows=stats.rows,
        input_rows=stats.input_rows,
        rejected=stats.rejected,
        truncated=stats.truncated,
        tokens=stats.tokens,
        padded_tokens=stats.padded_tokens,
        seconds=round(seconds, 3),
        embed_seconds=round(stats.embed_seconds, 3),
        source=task.source,
        key=task.key,
        space_fingerprint=task.space_fingerprint,
        rejects=rejects_ref,
        ids=ids_ref,
        id_type=id_type,
        unit=task.unit,
        # rows are windows (chunk), or documents made of several windows (average)
        documents=stats.embedded if mode != "truncate" else None,
        windows=stats.windows if mode != "truncate" else None,
        hash_scheme=hash_scheme,
        reuse=reuse,
    )
    # The marker goes last: its presence means every file it names is complete.
    output.write_atomic(task.marker_path, json.dumps(entry.to_dict(), indent=1).encode())
    return entry


def _commit_ids(output: OutputDir, stem: str, collected: IdCollector) -> FileRef:
    """The unit's ids file (e5ray.dupes), in `ids/`."""
    if output.is_local:  # the temporary file sits in the output: the commit is a rename
        os.makedirs(output.path(IDS_DIR), exist_ok=True)
    fd, local_path = tempfile.mkstemp(
        prefix=".ids-", suffix=".tmp", dir=output.path(IDS_DIR) if output.is_local else None
    )
    os.close(fd)
    try:
        collected.write(local_path)
        sha, size = sha256_of(fsspec.filesystem("file"), local_path), os.path.getsize(local_path)
        name = f"{stem}{IDS_SUFFIX}"
        output.upload(local_path, name)
    finally:
        if os.path.exists(local_path):
            os.unlink(local_path)
    return FileRef(name, size, sha, len(collected.keys), output.stamp(name))
