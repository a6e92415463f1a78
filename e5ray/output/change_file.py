"""A version's row changes: the file beside the version, and the manifest key that names it.

`manifests/v<version>.changes.<sha256[:16]>.parquet` (zstd): one row per id that was
inserted, updated or deleted since the previous version, sorted by id; columns `id` (the
output's id type) and `change` (`inserted`, `updated`, `deleted`; Parquet dictionary-encodes
it, so it costs about a bit a row). Unchanged rows are counted, not listed. The vectors stay in
the shards: the file says *which* rows, the version's files hold *what* they are.

The manifest key `row_changes` says what the version records:
- `{"mode": "rows", "path", "bytes", "sha256", "rows", "counts", "exact", "format"}`: the
  listed changes; `counts` has inserted, updated, deleted and unchanged; `exact` is false when
  a changed shard had no content hashes (its ids present on both sides count as updated);
- `{"mode": "replaced", "reason"}`: everything was replaced (the first version, `--full`, a new
  space, or an output whose rows cannot be told apart by id: see `e5ray.output.row_changes`).
A version without the key was written before change files existed (it reads as replaced).

Invariants, as for the entries side file (`e5ray.output.versions`): written create-only before
the version that names it (the version is the commit point), never overwritten (its name is
its content's checksum, so a retried commit writes the same file), checked on read (size,
sha256, rows), kept and collected by `e5ray gc` with its version, checked by `e5ray verify`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from e5ray.errors import ManifestInvalidError
from e5ray.store.filesystem import OutputDir

CHANGE_KINDS = ("inserted", "updated", "deleted")
ROWS, REPLACED = "rows", "replaced"
KEY = "row_changes"  # the manifest key
CHANGE_COLUMN = "change"


class ChangeFileError(ManifestInvalidError):
    """A version's change file is missing, or not what the version says (size, checksum, rows)."""


@dataclass(frozen=True)
class RowChanges:
    """What one version changed, row by row (`table`: id, change) or everything (`reason`)."""

    table: pa.Table | None
    counts: dict[str, int]
    exact: bool = True
    reason: str | None = None  # set when everything was replaced

    @classmethod
    def replaced(cls, reason: str) -> RowChanges:
        return cls(None, {}, reason=reason)


def change_file_name(version: int, sha256: str) -> str:
    return f"manifests/v{version:06d}.changes.{sha256[:16]}.parquet"


def encode(changes: RowChanges) -> bytes:
    """The change file's bytes: sorted by id, zstd."""
    assert changes.table is not None
    table = changes.table.sort_by("id")
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return bytes(sink.getvalue().to_pybytes())


def write_change_file(output: OutputDir, version: int, changes: RowChanges) -> dict[str, Any]:
    """Write `changes` for `version` create-only (if it lists rows); the manifest's `row_changes` value."""
    if changes.table is None:
        return {"mode": REPLACED, "reason": changes.reason or "everything replaced"}
    blob = encode(changes)
    sha = hashlib.sha256(blob).hexdigest()
    path = change_file_name(version, sha)
    try:
        output.write_create_only(path, blob)
    except FileExistsError:  # the same name is the same content (a retried commit)
        pass
    return {
        "mode": ROWS,
        "path": path,
        "bytes": len(blob),
        "sha256": sha,
        "rows": changes.table.num_rows,
        "counts": dict(changes.counts),
        "exact": changes.exact,
        "format": "parquet",
    }


def change_totals(ref: Mapping[str, Any] | None) -> dict[str, int]:
    """The manifest totals a version's row changes add (none for a replaced version)."""
    if not ref or ref.get("mode") != ROWS:
        return {}
    counts = ref.get("counts") or {}
    out = {f"rows_{kind}": int(counts.get(kind, 0)) for kind in (*CHANGE_KINDS, "unchanged")}
    return {**out, "change_bytes": int(ref.get("bytes", 0))}


def read_change_file(output: OutputDir, ref: Mapping[str, Any], name: str) -> pa.Table:
    """The table `ref` (in manifest `name`) names, once its size, checksum and rows are checked."""
    path = ref["path"]
    try:
        blob = output.read_bytes(path)
    except FileNotFoundError:
        raise ChangeFileError(f"{path}: missing (the change file {name} names)") from None
    sha = hashlib.sha256(blob).hexdigest()
    for what, found, said in (("bytes", len(blob), ref["bytes"]), ("sha256", sha, ref["sha256"])):
        if found != said:
            raise ChangeFileError(f"{path}: {what} {found}, {name} says {said}")
    try:
        table = pq.read_table(pa.BufferReader(blob))
    except (pa.ArrowException, OSError) as exc:
        raise ChangeFileError(f"{path}: not a Parquet file ({exc})") from None
    if table.num_rows != ref["rows"] or table.schema.names != ["id", CHANGE_COLUMN]:
        raise ChangeFileError(
            f"{path}: {table.num_rows} rows of {table.schema.names}, {name} says {ref['rows']} of ['id', 'change']"
        )
    return table


def change_file_problems(output: OutputDir, ref: Mapping[str, Any] | None, name: str) -> list[str]:
    """`e5ray verify`: the change file a version names is there and is what it says."""
    if not ref or ref.get("mode") != ROWS:
        return []
    try:
        table = read_change_file(output, ref, name)
    except ChangeFileError as exc:
        return [str(exc)]
    counts = ref.get("counts") or {}
    found = {str(row["values"]): int(row["counts"]) for row in pc.value_counts(table.column(CHANGE_COLUMN)).to_pylist()}
    problems = [
        f"{ref['path']}: {found.get(kind, 0)} {kind}, {name} says {counts.get(kind, 0)}"
        for kind in CHANGE_KINDS
        if found.get(kind, 0) != counts.get(kind, 0)
    ]
    bad = sorted(k for k in found if k not in CHANGE_KINDS)
    if bad:
        problems.append(f"{ref['path']}: change kinds {bad} are not among {list(CHANGE_KINDS)}")
    return problems
