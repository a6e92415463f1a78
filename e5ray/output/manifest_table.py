"""A manifest's unit entries as one Arrow table: the content of its Parquet side file.

Why: at 100,000 units the JSON entries are ~150 MB, and checking them with the JSON schema
costs ~3 ms an entry (jsonschema walks every keyword in Python). In a table, the column
types are the schema's type rules (checked once, for the whole column), and the value rules
the schema states (counts >= 0, sha256 hex, the unit kinds, at least one file, confined
paths) are checked column by column below, so a side file is refused for what a JSON
manifest is refused for, with one line that names the entry.

Invariants: one column per `ShardEntry` field, in `to_dict` form (file references and
the source as structs, `duplicates_of` as a list); `reuse` (free-form counts) as a JSON
string. `table_to_entries(entries_to_table(e))` gives back dicts that `ShardEntry.from_dict`
turns into the same entries. A field added to `ShardEntry` must be added here: writing an
entry with a key the table has no column for is refused, not dropped.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from e5ray.errors import ManifestInvalidError
from e5ray.store.paths import confined

_REF = pa.struct(
    [
        ("path", pa.string()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("rows", pa.int64()),
        ("stamp", pa.string()),
    ]
)
_SOURCE = pa.struct(
    [
        ("uri", pa.string()),
        ("relpath", pa.string()),
        ("size", pa.int64()),
        ("stamp", pa.string()),
        ("format", pa.string()),
        ("fingerprint", pa.string()),
    ]
)
_UNIT = pa.struct([("kind", pa.string()), ("start", pa.int64()), ("stop", pa.int64())])
_INT, _FLOAT, _STR = pa.int64(), pa.float64(), pa.string()
ENTRY_SCHEMA = pa.schema(
    [
        ("files", pa.list_(_REF)),
        ("rows", _INT),
        ("input_rows", _INT),
        ("rejected", _INT),
        ("truncated", _INT),
        ("tokens", _INT),
        ("padded_tokens", _INT),
        ("seconds", _FLOAT),
        ("embed_seconds", _FLOAT),
        ("source", _SOURCE),
        ("key", _STR),
        ("space_fingerprint", _STR),
        ("rejects", _REF),
        ("ids", _REF),
        ("id_type", _STR),
        ("duplicates", _INT),
        ("duplicates_of", pa.list_(_STR)),
        ("unit", _UNIT),
        ("hash_scheme", _STR),
        ("reuse", _STR),  # JSON text: its keys are free-form counts
        ("documents", _INT),
        ("windows", _INT),
    ]
)
_OPTIONAL = {"rejects", "ids", "id_type", "unit", "hash_scheme", "reuse", "documents", "windows"}
_REFS = ("files", "rejects", "ids")
_ID_TYPES = ("int64", "string")
_UNIT_KINDS = ("rows", "bytes", "slice")


def entries_to_table(entries: list[dict[str, Any]]) -> pa.Table:
    """The table of `entries` (`ShardEntry.to_dict` dicts); ValueError for a key without a column."""
    names = set(ENTRY_SCHEMA.names)
    unknown = sorted({key for entry in entries for key in entry} - names)
    if unknown:
        raise ValueError(f"manifest entries hold {unknown}, which the entries table has no column for")
    columns = {name: [e.get(name) for e in entries] for name in ENTRY_SCHEMA.names}
    columns["reuse"] = [None if counts is None else json.dumps(counts) for counts in columns["reuse"]]
    # Column by column: Table.from_pylist imports pandas (seconds) and is no faster.
    return pa.table([pa.array(columns[f.name], type=f.type) for f in ENTRY_SCHEMA], schema=ENTRY_SCHEMA)


def table_to_entries(table: pa.Table) -> list[dict[str, Any]]:
    """The entry dicts of `table` (checked by `check_table` first)."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    reuse = [None if text is None else json.loads(text) for text in columns.pop("reuse")]
    names = list(columns)
    entries = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    for entry, counts in zip(entries, reuse, strict=True):
        entry["reuse"] = counts
    return entries


def check_table(table: pa.Table, name: str) -> None:
    """Refuse a table that is not the entries table, or whose values the manifest schema refuses;
    one line naming `name`, the entry and the field (ManifestInvalidError, UnsafePathError)."""
    for field in ENTRY_SCHEMA:
        if field.name not in table.schema.names:
            raise ManifestInvalidError(f"{name}: no column {field.name!r}")
        found = table.schema.field(field.name).type
        if found != field.type:
            raise ManifestInvalidError(f"{name}: column {field.name!r} is {found}, expected {field.type}")
    columns = {c: table.column(c).combine_chunks() for c in ENTRY_SCHEMA.names}
    for column, values in columns.items():
        if column not in _OPTIONAL:
            _refuse(name, column, values, pc.is_null(values), "is missing")
    for column in ("files", "source", "rejects", "ids"):
        children = _OPTIONAL_CHILDREN.get(column, ())
        for child in columns[column].type.value_type if column == "files" else columns[column].type:
            if child.name not in children:
                where, values, index = _child(columns[column], column, child.name)
                _refuse(name, where, values, pc.is_null(values), "is missing", index)
    counts: list[tuple[str, pa.Array, np.ndarray | None]] = [
        *((c, columns[c], None) for c in ("rows", "input_rows", "rejected", "duplicates", "truncated")),
        *(_child(columns[c], c, f) for c in _REFS for f in ("bytes", "rows")),
        _child(columns["source"], "source", "size"),
        _child(columns["unit"], "unit", "start"),
    ]
    for where, values, entries in counts:
        _refuse(name, where, values, pc.less(values, 0), "is negative", entries)
    _refuse(name, "files", columns["files"], pc.equal(pc.list_value_length(columns["files"]), 0), "is empty")
    where, stops, index = _child(columns["unit"], "unit", "stop")
    _refuse(name, where, stops, pc.less(stops, 1), "is below 1", index)
    where, kinds, index = _child(columns["unit"], "unit", "kind")
    _refuse(name, where, kinds, _not_in(kinds, _UNIT_KINDS), f"is not one of {_UNIT_KINDS}", index)
    ids = columns["id_type"]
    _refuse(name, "id_type", ids, _not_in(ids, _ID_TYPES), f"is not one of {_ID_TYPES}")
    for column in _REFS:
        where, shas, index = _child(columns[column], column, "sha256")
        _refuse(name, where, shas, pc.invert(pc.match_substring_regex(shas, "^[0-9a-f]{64}$")), "is no sha256", index)
        where, paths, index = _child(columns[column], column, "path")
        for i, path in zip(index, paths.to_pylist(), strict=True):
            confined(path, f"{name}: shards[{i}].{where}")


_OPTIONAL_CHILDREN = {"files": ("rows", "stamp"), "rejects": ("rows", "stamp"), "ids": ("rows", "stamp")}


def _not_in(values: pa.Array, valid: tuple[str, ...]) -> pa.Array:
    """True where a value is present and not one of `valid` (nulls are checked apart)."""
    return pc.and_(pc.is_valid(values), pc.invert(pc.is_in(values, pa.array(valid))))


def _child(array: pa.Array, column: str, field: str) -> tuple[str, pa.Array, np.ndarray]:
    """(label, values, entry index) of `field` in the struct (or list of structs) `array`,
    for the entries where the struct is present."""
    index = np.arange(len(array))
    if pa.types.is_list(array.type):
        index = pc.list_parent_indices(array).to_numpy()
        array = pc.list_flatten(array)
        column += "[]"
    present = array.is_valid()
    return f"{column}.{field}", array.field(field).filter(present), index[present.to_numpy(zero_copy_only=False)]


def _refuse(name: str, where: str, values: pa.Array, bad: pa.Array, why: str, index: np.ndarray | None = None) -> None:
    """ManifestInvalidError for the first entry where `bad` is true (nulls in `bad` are not bad)."""
    hits = np.flatnonzero(bad.fill_null(False).to_numpy(zero_copy_only=False))
    if hits.size:
        at = int(hits[0])
        entry = at if index is None else int(index[at])
        raise ManifestInvalidError(f"{name}: shards[{entry}].{where} {values[at].as_py()!r:.80} {why}")
