"""Input formats: file extensions -> format name -> the reader that streams its chunks.

A new input format is a `Reader` (e5ray.corpus.chunk) registered in READERS, plus its
extensions in EXTENSIONS. Invariant: FORMATS is exactly the formats that have a reader,
so `--format` (e5ray.config, the command line) can only name a format that can be read;
the longest matching extension wins (`.jsonl.gz` before `.gz`).
"""

from __future__ import annotations

from e5ray.corpus.chunk import Reader
from e5ray.corpus.jsonl_reader import jsonl_chunks
from e5ray.corpus.parquet_reader import parquet_chunks

EXTENSIONS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".jsonl.gz": "jsonl",
    ".ndjson": "jsonl",
    ".ndjson.gz": "jsonl",
    ".json": "jsonl",
    ".json.gz": "jsonl",
}

READERS: dict[str, Reader] = {
    "parquet": parquet_chunks,
    "jsonl": jsonl_chunks,
}
FORMATS = tuple(READERS)


def format_of(path: str) -> str | None:
    """'parquet' or 'jsonl' from the file name, None when the extension is unknown."""
    lower = path.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return EXTENSIONS[ext]
    return None
