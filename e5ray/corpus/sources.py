"""Input corpora: find the shards, fingerprint them, stream their rows.

A corpus is a set of Parquet or JSONL (optionally gzip) files under a local directory,
a glob, a single file or an object-store prefix. Each file is one *source shard*;
its fingerprint (size plus ETag or mtime, else a content hash) says whether it changed.
Readers stream fixed-size chunks so memory does not grow with the shard, and read
either the whole file or one work unit of it (`e5ray.corpus.units.UnitRange`: Parquet row
groups, or the JSONL lines that start inside a byte range).

This module is the corpus's front: `read_chunks` picks a shard's reader, and the names the
rest of the library imports from here live in their own modules: `shard` (SourceShard),
`discovery` (discover), `formats` (extensions and readers), `chunk` (Chunk), and one reader
per format (`parquet_reader`, `jsonl_reader`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from e5ray.corpus.chunk import Chunk, Reader
from e5ray.corpus.discovery import discover
from e5ray.corpus.formats import EXTENSIONS, FORMATS, READERS, format_of
from e5ray.corpus.parquet_reader import parquet_row_groups
from e5ray.corpus.shard import SourceShard
from e5ray.corpus.units import UnitRange
from e5ray.errors import CorpusError
from e5ray.store.filesystem import filesystem_for

__all__ = [
    "EXTENSIONS",
    "FORMATS",
    "READERS",
    "Chunk",
    "CorpusError",
    "Reader",
    "SourceShard",
    "discover",
    "format_of",
    "parquet_row_groups",
    "read_chunks",
]


def read_chunks(
    shard: SourceShard,
    id_column: str = "id",
    text_column: str = "text",
    chunk_rows: int = 2048,
    storage_options: dict[str, Any] | None = None,
    unit: UnitRange | None = None,
    keep: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    """Stream a shard (or the unit `unit` of it) in chunks of at most `chunk_rows` rows, with the `keep` columns."""
    reader = READERS.get(shard.format)
    if reader is None:
        raise CorpusError(f"unknown format {shard.format!r}; valid: {', '.join(FORMATS)}")
    fs, path = filesystem_for(shard.uri, storage_options)
    yield from reader(fs, path, shard.uri, id_column, text_column, chunk_rows, unit, keep)
