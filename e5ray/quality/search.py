"""`e5ray search OUTPUT "text"`: the k vectors of an output nearest to a query.

The query is embedded in the output's own space (model file, pooling, precision and
max length from its manifest; the embedder that is loaded must reproduce that space
or the search is refused). The current version's shards are then streamed batch by
batch (`batch_rows` vectors at a time) and only a running top k is kept, so memory
is one batch plus k hits whatever the size of the output: an output larger than RAM
is searched like a small one. Vectors are unit-norm, so the score is the cosine.

Ties are broken by the order of the rows in the manifest's shards, so a search is
deterministic. In chunk mode a hit is a window: its document id, window and spans.
With the corpus (`input`), the texts of the hits are looked up by streaming the
source shards that the hits came from (the manifest records them), stopping once
every hit has its text. Reading the output (its version, files and vector batches) is
`e5ray.quality.output_reader`, shared with `e5ray compare`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from e5ray.errors import SpaceMismatchError, UsageError
from e5ray.model.space import EmbeddingSpace, as_prefix
from e5ray.model.windows import WINDOW_COLUMNS
from e5ray.quality.output_reader import current_version, stream_vectors
from e5ray.store.filesystem import OutputDir

DEFAULT_BATCH_ROWS = 8192  # 32 MiB of e5-large vectors per step
# Fields that decide where a query vector lands (prefix and long-text mode are per call).
QUERY_SPACE_FIELDS = ("model_sha256", "dim", "max_length", "precision", "pooling", "normalized")


@dataclass
class Hit:
    score: float
    id: Any
    shard: str  # the output shard, relative to the output root
    source: str  # relpath of the input shard it came from
    window: dict[str, int] | None = None  # chunk mode: WINDOW_COLUMNS -> value
    text: str | None = None


@dataclass
class SearchStats:
    """What a search read: rows and batches, and the largest batch it held at once."""

    shards: int = 0
    rows: int = 0
    batches: int = 0
    max_batch_rows: int = 0
    batch_rows: int = 0


@dataclass
class SearchResult:
    hits: list[Hit]
    stats: SearchStats
    version: int
    space: EmbeddingSpace
    query: str = ""
    notes: list[str] = field(default_factory=list)


class TopK:
    """The k best (score, order) rows seen so far; order breaks ties (earlier wins)."""

    def __init__(self, k: int) -> None:
        if k < 1:
            raise UsageError(f"k must be >= 1, got {k}")
        self.k = k
        self.scores = np.empty(0, dtype=np.float32)
        self.order = np.empty(0, dtype=np.int64)
        self.items: list[Any] = []

    def offer(self, scores: np.ndarray, first_order: int, make_item: Any) -> None:
        """Consider a batch's `scores` (rows numbered from `first_order`); `make_item(i)` builds
        the item of row i, called only for rows that may enter."""
        if len(scores) == 0:
            return
        candidates = np.arange(len(scores))
        if len(scores) > self.k:
            # Every row tied with the batch's k-th best stays a candidate: the earliest must win.
            kth = np.partition(scores, len(scores) - self.k)[len(scores) - self.k]
            candidates = np.flatnonzero(scores >= kth)
        if len(self.scores) == self.k:  # only rows that beat (or tie) the current k-th can enter
            candidates = candidates[scores[candidates] >= self.scores[-1]]
            if len(candidates) == 0:
                return
        all_scores = np.concatenate([self.scores, scores[candidates]])
        all_order = np.concatenate([self.order, first_order + candidates])
        keep = np.lexsort((all_order, -all_scores))[: self.k]
        items = self.items + [make_item(int(i)) for i in candidates]
        self.scores, self.order = all_scores[keep], all_order[keep]
        self.items = [items[i] for i in keep]


def embed_query(
    space: EmbeddingSpace,
    text: str,
    model_path: str | os.PathLike[str] | None = None,
    prefix: str = "query",
    device: str = "cpu",
    threads: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> np.ndarray:
    """`text` embedded as `space` embeds (refused when the model found gives another space)."""
    from e5ray.model.embedder import E5Embedder

    embedder = E5Embedder(
        model=space.model,
        model_path=model_path,
        device=device,  # type: ignore[arg-type]
        threads=threads,
        max_length=space.max_length,
        precision=space.precision,  # type: ignore[arg-type]
        cache_dir=cache_dir,
        storage_options=storage_options,
        pooling=space.pooling,
    )
    mine, theirs = embedder.space, space
    differ = {
        f: (getattr(theirs, f), getattr(mine, f)) for f in QUERY_SPACE_FIELDS if getattr(mine, f) != getattr(theirs, f)
    }
    if differ:
        details = "; ".join(f"{k}: {a!r} in the output, {b!r} here" for k, (a, b) in differ.items())
        raise SpaceMismatchError(
            f"the model at hand ({embedder.files.onnx_path}) does not embed into the output's space ({details}); "
            "pass --model-path with the model the output was made with"
        )
    vector: np.ndarray = embedder.embed([text], as_prefix(prefix), long_text="truncate").vectors[0]
    return vector


def search_output(
    output: str,
    query: str | np.ndarray,
    k: int = 10,
    *,
    model_path: str | os.PathLike[str] | None = None,
    input_uri: str | None = None,
    prefix: str = "query",
    device: str = "cpu",
    threads: int | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> SearchResult:
    """Top `k` rows of the output's current version for `query` (a text, or a unit vector)."""
    if batch_rows < 1:
        raise UsageError(f"batch_rows must be >= 1, got {batch_rows}")
    out = OutputDir(output, storage_options)
    version = current_version(output, storage_options)
    space = version.space
    if isinstance(query, str):
        vector = embed_query(space, query, model_path, prefix, device, threads, cache_dir, storage_options)
    else:
        vector = np.asarray(query, dtype=np.float32)
        if vector.shape != (space.dim,):
            raise UsageError(f"query vector has shape {vector.shape}; this output's vectors have {space.dim} dims")
    windowed = space.long_text == "chunk"
    top = TopK(k)
    stats = SearchStats(batch_rows=batch_rows)
    for path, source in version.files:
        stats.shards += 1
        for vectors, batch in stream_vectors(out.fs, out.path(path), space.dim, batch_rows, windowed):
            stats.batches += 1
            stats.max_batch_rows = max(stats.max_batch_rows, batch.num_rows)

            def make_hit(i: int, batch: pa.RecordBatch = batch, path: str = path, source: str = source) -> Hit:
                window = {name: int(batch.column(name)[i].as_py()) for name in WINDOW_COLUMNS} if windowed else None
                return Hit(0.0, batch.column("id")[i].as_py(), path, source, window)

            top.offer(vectors @ vector, stats.rows, make_hit)
            stats.rows += batch.num_rows
    for hit, score in zip(top.items, top.scores, strict=True):
        hit.score = float(score)
    result = SearchResult(top.items, stats, version.number, space, query if isinstance(query, str) else "")
    if input_uri is not None and result.hits:
        result.notes += attach_texts(result.hits, input_uri, version.input, storage_options)
    return result


def attach_texts(
    hits: list[Hit], input_uri: str, info: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> list[str]:
    """Set each hit's text from the corpus (the window's characters in chunk mode); returns notes
    about hits whose text was not found. Reads the hits' own source shards first. `info`: the
    manifest's input record (format and columns)."""
    from e5ray.corpus.sources import discover, read_chunks

    id_column, text_column = info.get("id_column", "id"), info.get("text_column", "text")
    wanted: dict[Any, list[Hit]] = {}
    for hit in hits:
        wanted.setdefault(hit.id, []).append(hit)
    sources = discover(input_uri, info.get("format"), storage_options)
    hit_sources = {hit.source for hit in hits}
    sources.sort(key=lambda s: s.relpath not in hit_sources)  # the hits' own shards first
    for source in sources:
        if not wanted:
            break
        for chunk in read_chunks(source, id_column, text_column, storage_options=storage_options):
            for id_value, text in zip(chunk.ids, chunk.texts, strict=True):
                try:
                    found = wanted.pop(id_value, [])
                except TypeError:  # an unhashable id (a list) is no hit's id
                    continue
                for hit in found:
                    window = hit.window
                    hit.text = text[window["char_start"] : window["char_end"]] if window and text else text
            if not wanted:
                break
    return [f"id {i!r}: not found in {input_uri}" for i in wanted]


def format_result(result: SearchResult, width: int = 100) -> str:
    """The hits as printed by `e5ray search`: rank, score, id (window and spans), text."""
    lines = []
    for rank, hit in enumerate(result.hits, start=1):
        line = f"{rank:>3}  {hit.score:+.4f}  {hit.id}"
        if hit.window is not None:
            w = hit.window
            line += (
                f"  window {w['window']} tokens {w['token_start']}-{w['token_end']} "
                f"chars {w['char_start']}-{w['char_end']}"
            )
        if hit.text is not None:
            flat = " ".join(hit.text.split())
            line += "  " + (flat if len(flat) <= width else flat[: width - 1] + "…")
        lines.append(line)
    s, space = result.stats, result.space
    lines.append(
        f"# {s.rows} rows in {s.shards} shards (version {result.version}), read in {s.batches} batches of "
        f"at most {s.batch_rows} rows; space: {space.model}, {space.pooling} pooling, {space.precision}, "
        f"max length {space.max_length}, long texts {space.long_text}"
    )
    lines += [f"# {note}" for note in result.notes]
    return "\n".join(lines)
