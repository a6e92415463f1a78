"""Cheap looks into a shard before any worker reads it: its first rows, its ids' type.

Invariants: a peek reads at most the Parquet footer (the schema) or the first MiB of a
JSON file, never the whole shard; it never fails: a shard it cannot read or decide gives
None, and the worker that reads the shard reports what is wrong with it, with the file.
The id type a peek names is the one the worker will write (`e5ray.corpus.rows`:
`output_id_type` for Parquet columns, `normalise_id` for JSON values), so a corpus that
would mix id types in the output is refused while planning, before anything is embedded.
"""

from __future__ import annotations

import gzip
import io
import json
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.corpus.rows import id_type_name, normalise_id, output_id_type
from e5ray.corpus.shard import SourceShard
from e5ray.store.filesystem import filesystem_for, open_known_size

HEAD_BYTES = 1 << 20
PEEK_LINES = 100
# Parquet column types whose values `normalise_id` can turn into ids (others: every row rejected).
_ID_COLUMN_TYPES = (
    pa.types.is_integer,
    pa.types.is_floating,
    pa.types.is_decimal,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_fixed_size_binary,
)


def head_records(source: SourceShard, storage_options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The records among the first `PEEK_LINES` lines of a JSON lines shard (or of a JSON array
    that fits in its first MiB); malformed lines are skipped (each is a rejected row)."""
    fs, path = filesystem_for(source.uri, storage_options)
    with open_known_size(fs, path, source.size) as raw:  # sized from the listing: no HEAD
        head = raw.read(HEAD_BYTES)
    if source.uri.endswith(".gz"):
        head = gzip.GzipFile(fileobj=io.BytesIO(head)).read(HEAD_BYTES) if head else b""
    head = head.removeprefix(b"\xef\xbb\xbf")
    if head.lstrip().startswith(b"["):
        try:
            rows = json.loads(head)
        except ValueError:  # larger than the head, or not one array: the lines below
            rows = None
        if isinstance(rows, list):
            return [row for row in rows[:PEEK_LINES] if isinstance(row, dict)]
    lines = head.splitlines()
    if len(lines) > 1 and not head.endswith(b"\n"):
        lines = lines[:-1]  # cut off mid-line by the ranged read
    records = []
    for line in [line for line in lines if line.strip()][:PEEK_LINES]:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            records.append(row)
    return records


def peek_id_type(
    source: SourceShard, id_column: str, id_type: str, storage_options: dict[str, Any] | None = None
) -> str | None:
    """'int64' or 'string': the id type the output will hold for `source`, from the Parquet
    footer's schema or the first JSON record with a usable id; None when it cannot tell."""
    if id_type == "string":
        return "string"
    try:
        if source.format == "parquet":
            fs, path = filesystem_for(source.uri, storage_options)
            with open_known_size(fs, path, source.size) as fh:  # sized from the listing: no HEAD
                schema = pq.read_schema(fh)
            declared = schema.field(id_column).type if id_column in schema.names else None
            if declared is None or not _can_hold_ids(declared):
                return None  # a missing column or one of no id type: every row is rejected
            return id_type_name(output_id_type(declared, id_type))
        for record in head_records(source, storage_options):
            value, problem = normalise_id(record.get(id_column), id_type)
            if problem is None:
                return "string" if isinstance(value, str) else "int64"
        return None
    except Exception as exc:  # unreadable here: the worker reports it; a dead store is not a bad shard
        if _is_storage_failure(exc):
            raise
        return None


def _can_hold_ids(declared: pa.DataType) -> bool:
    if pa.types.is_dictionary(declared):
        declared = declared.value_type
    return any(kind(declared) for kind in _ID_COLUMN_TYPES)


def _is_storage_failure(exc: BaseException) -> bool:
    from e5ray.store.failures import classify

    return classify(exc) is not None
