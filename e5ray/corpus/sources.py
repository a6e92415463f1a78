"""Input corpora: find the shards, fingerprint them, stream their rows.

A corpus is a set of Parquet or JSONL (optionally gzip) files under a local directory,
a glob, a single file or an object-store prefix. Each file is one *source shard*;
its fingerprint (size plus ETag or mtime, else a content hash) says whether it changed.
Readers stream fixed-size chunks so memory does not grow with the shard, and read
either the whole file or one work unit of it (`e5ray.corpus.units.UnitRange`: Parquet row
groups, or the JSONL lines that start inside a byte range).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.corpus.units import RowGroupStats, UnitRange
from e5ray.errors import CorpusError
from e5ray.store.filesystem import filesystem_for, info_etag, info_mtime, is_remote, sha256_of

# Extensions -> format name. A new input format is a reader function (fs, path, uri,
# id_column, text_column, chunk_rows, unit) -> Iterator[Chunk] registered in READERS below,
# plus its extensions here.
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


def format_of(path: str) -> str | None:
    """'parquet' or 'jsonl' from the file name, None when the extension is unknown."""
    lower = path.lower()
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if lower.endswith(ext):
            return EXTENSIONS[ext]
    return None


@dataclass(frozen=True)
class SourceShard:
    """One input file and what identifies its content."""

    uri: str
    relpath: str  # path below the input root; names the output shard
    size: int
    stamp: str  # ETag, mtime in ns, or "sha256:<hex>" where the store gives neither
    format: str

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self.size}|{self.stamp}".encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fingerprint": self.fingerprint}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SourceShard:
        return cls(**{k: data[k] for k in ("uri", "relpath", "size", "stamp", "format")})


def _stamp(fs: Any, path: str, info: dict[str, Any]) -> str:
    etag = info_etag(info)
    if etag:
        return "etag:" + etag
    mtime = info_mtime(info)
    if mtime is not None:
        if hasattr(mtime, "timestamp"):
            return f"mtime:{mtime.timestamp():.6f}"
        return f"mtime:{int(float(mtime) * 1e9) if isinstance(mtime, float) else mtime}"
    return "sha256:" + sha256_of(fs, path)


def discover(
    input_uri: str, fmt: str | None = None, storage_options: dict[str, Any] | None = None
) -> list[SourceShard]:
    """List the source shards of `input_uri` (a directory, prefix, glob or single file)."""
    if fmt is not None and fmt not in FORMATS:
        raise CorpusError(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    fs, root = filesystem_for(input_uri, storage_options)
    scheme = input_uri.split("://", 1)[0] + "://" if is_remote(input_uri) else ""
    if any(ch in root for ch in "*?["):
        infos = {p: fs.info(p) for p in fs.glob(root) if fs.isfile(p)}
        base = root[: min(root.find(ch) for ch in "*?[" if ch in root)].rsplit("/", 1)[0]
    elif fs.isfile(root):
        infos = {root: fs.info(root)}
        base = root.rsplit("/", 1)[0]
    elif fs.isdir(root):
        infos = fs.find(root, detail=True)
        base = root
    else:
        from e5ray.store.failures import check_bucket

        check_bucket(input_uri, storage_options, "listing the input")  # a missing bucket says so
        raise CorpusError(f"input {input_uri!r} does not exist")
    shards = []
    skipped = []
    for path, info in sorted(infos.items()):
        rel = path[len(base.rstrip("/")) + 1 :] if path.startswith(base) else path.rsplit("/", 1)[-1]
        if any(part.startswith((".", "_")) for part in rel.split("/")):
            continue  # hidden files and markers such as _SUCCESS
        shard_fmt = fmt or format_of(path)
        if shard_fmt is None:
            skipped.append(rel)
            continue
        shards.append(SourceShard(scheme + path, rel, int(info.get("size") or 0), _stamp(fs, path, info), shard_fmt))
    if not shards:
        raise CorpusError(
            f"no corpus shards under {input_uri!r}: expected files ending in {', '.join(EXTENSIONS)}"
            + (f"; found only {skipped[:10]}" if skipped else "")
            + " (use --format to read other names)"
        )
    return shards


@dataclass
class Chunk:
    """Consecutive raw rows of a shard: `ids` and `texts` as Python values, unvalidated.

    `errors` holds, by position, a reason for rows that could not even be parsed
    (malformed JSON line); such rows have None id and text.
    """

    start: int  # row number of the first row in the shard (in the unit, for a JSONL byte range)
    ids: list[Any]
    texts: list[Any]
    errors: dict[int, str]
    id_type: pa.DataType | None = None  # the column's declared type (Parquet only)
    offsets: list[int] | None = None  # JSONL byte ranges: each row's byte offset in the file
    # Kept columns (--keep-columns) by name: Arrow arrays from Parquet (types kept), lists from JSONL.
    extra: dict[str, Any] = field(default_factory=dict)

    def locate(self, pos: int) -> dict[str, int]:
        """Where row `pos` of this chunk is in its file: {"row": n} or, in a byte range, {"offset": b}."""
        if self.offsets is not None:
            return {"offset": self.offsets[pos]}
        return {"row": self.start + pos}


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


def _open_parquet(fh: Any, uri: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(fh)
    except pa.ArrowInvalid as exc:
        raise CorpusError(f"{uri} is not a readable Parquet file: {exc}") from exc


def parquet_row_groups(
    shard: SourceShard, text_column: str, storage_options: dict[str, Any] | None = None
) -> list[RowGroupStats]:
    """Rows and uncompressed text bytes of each row group, from the footer alone (one ranged read)."""
    fs, path = filesystem_for(shard.uri, storage_options)
    with fs.open(path, "rb") as fh:
        meta = _open_parquet(fh, shard.uri).metadata
    names = [meta.schema.column(i).path for i in range(meta.num_columns)]
    col = names.index(text_column) if text_column in names else None
    stats = []
    for i in range(meta.num_row_groups):
        group = meta.row_group(i)
        text = group.column(col).total_uncompressed_size if col is not None else group.total_byte_size
        stats.append(RowGroupStats(group.num_rows, int(text)))
    return stats


def _parquet_chunks(
    fs: Any,
    path: str,
    uri: str,
    id_column: str,
    text_column: str,
    chunk_rows: int,
    unit: UnitRange | None = None,
    keep: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    with fs.open(path, "rb") as fh:
        reader = _open_parquet(fh, uri)
        names = reader.schema_arrow.names
        missing = [c for c in (id_column, text_column) if c not in names]
        if missing:
            raise CorpusError(f"{uri}: no column {missing} (columns: {names}); set --id-column/--text-column")
        missing = [c for c in keep if c not in names]
        if missing:
            raise CorpusError(f"{uri}: no column {missing} to keep (columns: {names}); see --keep-columns")
        id_type = reader.schema_arrow.field(id_column).type
        groups = None
        start = 0
        if unit is not None:
            if unit.kind != "rows" or unit.stop > reader.num_row_groups:
                raise CorpusError(f"{uri}: unit {unit.label} does not fit its {reader.num_row_groups} row groups")
            groups = list(range(unit.start, unit.stop))
            start = sum(reader.metadata.row_group(i).num_rows for i in range(unit.start))
        columns = list(dict.fromkeys([id_column, text_column, *keep]))  # a kept text column is read once
        for batch in reader.iter_batches(batch_size=chunk_rows, columns=columns, row_groups=groups):
            ids = batch.column(id_column).to_pylist()
            texts = batch.column(text_column).to_pylist()
            extra = {name: batch.column(name) for name in keep}
            yield Chunk(start, ids, texts, {}, id_type, extra=extra)
            start += len(ids)


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


def _jsonl_chunks(
    fs: Any,
    path: str,
    uri: str,
    id_column: str,
    text_column: str,
    chunk_rows: int,
    unit: UnitRange | None = None,
    keep: tuple[str, ...] = (),
) -> Iterator[Chunk]:
    # Parsed line by line so that one malformed line becomes one recorded rejection
    # instead of failing the whole shard.
    with fs.open(path, "rb", compression="infer" if unit is None else None) as raw:
        offsets: list[int] | None = [] if unit is not None else None
        chunk = Chunk(0, [], [], {}, offsets=offsets, extra={name: [] for name in keep})
        row = 0
        seen_columns: set[str] = set()
        for offset, line in _json_rows(_lines(raw, unit)):
            if not line.strip():
                continue  # blank lines are not rows
            pos = len(chunk.ids)
            if chunk.offsets is not None:
                chunk.offsets.append(offset)
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError(f"a JSON {type(record).__name__}, not an object")
                seen_columns.update(record)
                chunk.ids.append(record.get(id_column))
                chunk.texts.append(record.get(text_column))
                for name in keep:
                    chunk.extra[name].append(record.get(name))
                if id_column not in record:
                    chunk.errors[pos] = f"no {id_column!r} field"
                elif text_column not in record:
                    chunk.errors[pos] = f"no {text_column!r} field"
            except ValueError as exc:
                chunk.ids.append(None)
                chunk.texts.append(None)
                for name in keep:
                    chunk.extra[name].append(None)
                chunk.errors[pos] = f"malformed JSON line: {str(exc)[:120]}"
            row += 1
            if len(chunk.ids) >= chunk_rows:
                _check_columns(path, seen_columns, id_column, text_column)
                yield chunk
                chunk = Chunk(
                    row, [], [], {}, offsets=[] if unit is not None else None, extra={name: [] for name in keep}
                )
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


Reader = Callable[[Any, str, str, str, str, int, UnitRange | None, tuple[str, ...]], Iterator[Chunk]]
READERS: dict[str, Reader] = {
    "parquet": _parquet_chunks,
    "jsonl": _jsonl_chunks,
}
FORMATS = tuple(READERS)
