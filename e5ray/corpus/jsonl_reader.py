"""Reading JSONL shards (optionally gzip), and `.json` files holding one JSON array.

Invariants:
- one malformed line is one rejected row (with its reason), never a failed shard; a field
  that no record has is a configuration error, not many bad rows;
- a unit is a byte range, and a row belongs to the unit in which its line starts, so the
  units of a file partition its rows exactly; each row of a byte range records its byte
  offset, which is how a rejected row is located;
- bytes are decoded with surrogateescape: an invalid byte becomes a lone surrogate that
  the row validator rejects with its reason (or repairs under --on-invalid-utf8 replace),
  never a silent U+FFFD; a leading BOM is not part of the first row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from e5ray.corpus.chunk import Chunk
from e5ray.corpus.units import UnitRange
from e5ray.errors import CorpusError


def _lines(raw: Any, unit: UnitRange | None) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line) of every line of the file, or of those starting in `unit`'s byte range."""
    if unit is None:
        offset = 0
        for line in raw:
            yield offset, line
            offset += len(line)
        return
    if unit.kind != "bytes":
        raise CorpusError(f"a JSONL file is split by byte ranges, not {unit.kind!r}")
    offset = unit.start
    if offset > 0:
        # The line that holds byte start-1 belongs to the unit before, unless it ends right there.
        raw.seek(offset - 1)
        offset = offset - 1 + len(raw.readline())
    while offset < unit.stop:
        line = raw.readline()
        if not line:
            return
        yield offset, line
        offset += len(line)


def _empty_chunk(start: int, in_range: bool, keep: tuple[str, ...]) -> Chunk:
    """A chunk to fill; rows of a byte range (`in_range`) record their byte offsets."""
    return Chunk(start, [], [], {}, offsets=[] if in_range else None, extra={name: [] for name in keep})


def _add_row(chunk: Chunk, line: str, id_column: str, text_column: str, keep: tuple[str, ...]) -> set[str]:
    """Append one line's row to `chunk` (None id and text, and the reason, when it does not
    parse as an object); returns the record's fields."""
    pos = len(chunk.ids)
    try:
        record = json.loads(line)
        if not isinstance(record, dict):
            raise ValueError(f"a JSON {type(record).__name__}, not an object")
    except ValueError as exc:
        chunk.ids.append(None)
        chunk.texts.append(None)
        for name in keep:
            chunk.extra[name].append(None)
        chunk.errors[pos] = f"malformed JSON line: {str(exc)[:120]}"
        return set()
    chunk.ids.append(record.get(id_column))
    chunk.texts.append(record.get(text_column))
    for name in keep:
        chunk.extra[name].append(record.get(name))
    if id_column not in record:
        chunk.errors[pos] = f"no {id_column!r} field"
    elif text_column not in record:
        chunk.errors[pos] = f"no {text_column!r} field"
    return set(record)


def jsonl_chunks(
    fs: Any,
    path: str,
    uri: str,
    id_column: str,
    text_column: str,
    chunk_rows: int,
    unit: UnitRange | None = None,
    keep: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    """The `Reader` for JSONL: the shard's (or byte range's) rows in chunks of `chunk_rows`."""
    # Parsed line by line so that one malformed line becomes one recorded rejection
    # instead of failing the whole shard.
    with fs.open(path, "rb", compression="infer" if unit is None else None) as raw:
        chunk = _empty_chunk(0, unit is not None, keep)
        row = 0
        seen_columns: set[str] = set()
        for offset, line in _json_rows(_lines(raw, unit)):
            if not line.strip():
                continue  # blank lines are not rows
            if chunk.offsets is not None:
                chunk.offsets.append(offset)
            seen_columns.update(_add_row(chunk, line, id_column, text_column, keep))
            row += 1
            if len(chunk.ids) >= chunk_rows:
                _check_columns(path, seen_columns, id_column, text_column)
                yield chunk
                chunk = _empty_chunk(row, unit is not None, keep)
        if chunk.ids or row == 0:
            _check_columns(path, seen_columns, id_column, text_column)
            yield chunk


def _decoded(raw_line: bytes, offset: int) -> str:
    """One line as text. A leading BOM is not part of the first row. surrogateescape: an
    invalid byte becomes a lone surrogate that the row validator rejects with its reason
    (or repairs under --on-invalid-utf8 replace); never a silent U+FFFD."""
    if offset == 0 and raw_line.startswith(b"\xef\xbb\xbf"):
        raw_line = raw_line[3:]
    return raw_line.decode("utf-8", errors="surrogateescape")


def _json_rows(lines: Iterator[tuple[int, bytes]]) -> Iterator[tuple[int, str]]:
    """(byte offset, row) of a JSONL stream, one row a line; a file holding one JSON array
    (a `.json` export) yields each element as a row instead (offset 0: such a file is never
    split into byte ranges, `e5ray.corpus.units.is_splittable_jsonl`). Such a file is parsed whole:
    use JSONL for shards larger than memory."""
    first, first_offset = "", 0
    for first_offset, raw_line in lines:
        first = _decoded(raw_line, first_offset)
        if first.strip():
            break
    if first_offset != 0 or not first.lstrip().startswith("["):
        if first:
            yield first_offset, first
        for offset, raw_line in lines:
            yield offset, _decoded(raw_line, offset)
        return
    text = first + "".join(_decoded(raw_line, offset) for offset, raw_line in lines)
    try:
        records = json.loads(text)
    except ValueError:  # not one array after all (e.g. a JSONL file of arrays): rows as lines
        yield from ((0, line) for line in text.splitlines())
        return
    if not isinstance(records, list):
        yield from ((0, line) for line in text.splitlines())
        return
    for record in records:
        yield 0, json.dumps(record, ensure_ascii=False)


def _check_columns(path: str, seen: set[str], id_column: str, text_column: str) -> None:
    """A column no record has is a configuration error, not a few bad rows."""
    if not seen:
        return
    missing = [c for c in (id_column, text_column) if c not in seen]
    if missing:
        raise CorpusError(
            f"{path}: no record has field {missing} (fields seen: {sorted(seen)[:20]}); set --id-column/--text-column"
        )
