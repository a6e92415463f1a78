"""Manifest versions under an output root, and the commit that adds one.

Layout under the output root:
- `manifests/v000001.json`, `v000002.json`, ...: immutable versions, each written
  create-only, so two concurrent runs cannot both commit the same version;
- `manifest.json`: a copy of the newest version, replaced atomically; the file readers use.
- `manifests/v000002.shards.<sha256[:16]>.parquet`: the unit entries of a version with at
  least `SIDE_FILE_MIN_ENTRIES` of them (e5ray.output.manifest_table), zstd-compressed; the version
  (and `manifest.json`) then holds `shards_file` {path, bytes, sha256, entries} instead of
  `shards`. Written create-only before the version that names it (the version is the commit
  point), never overwritten: its name is its content's checksum. Loading checks its size,
  checksum and entry count and returns the same `Manifest` as a plain JSON version would.

The newest version is the highest number in `manifests/` (a run killed between its two
writes leaves `manifest.json` one version behind; the next run publishes it again).
All manifest reads and writes go through `read_manifest` and `commit`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.errors import ConcurrentCommitError, ManifestInvalidError
from e5ray.model.space import EmbeddingSpace
from e5ray.output.manifest import Manifest, RunInfo, ShardEntry
from e5ray.output.manifest_schema import validate_manifest
from e5ray.output.manifest_table import check_table, entries_to_table, table_to_entries
from e5ray.store.filesystem import OutputDir

MANIFEST = "manifest.json"
VERSIONS_DIR = "manifests"
_VERSION_RE = re.compile(r"v(\d{6,})\.json$")
SIDE_FILE_MIN_ENTRIES = 2_000  # from here on, a version's entries go to a Parquet side file
SHARDS_FILE = "shards_file"  # the key that names it, in place of "shards"


def version_name(number: int) -> str:
    return f"{VERSIONS_DIR}/v{number:06d}.json"


def list_versions(output: OutputDir) -> list[int]:
    if not output.exists(VERSIONS_DIR):
        return []
    numbers = []
    for path in output.fs.ls(output.path(VERSIONS_DIR), detail=False):
        match = _VERSION_RE.search(path)
        if match:
            numbers.append(int(match.group(1)))
    return sorted(numbers)


def read_json(output: OutputDir, rel: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(output.read_bytes(rel))
    return data


def read_manifest(output: OutputDir, rel: str = MANIFEST) -> Manifest:
    """A manifest file, checked against the schema and the path rule (e5ray.output.manifest_schema)."""
    try:
        data = read_json(output, rel)
    except UnicodeDecodeError as exc:
        raise ManifestInvalidError(f"{rel}: not UTF-8 JSON ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ManifestInvalidError(f"{rel}: not JSON ({exc})") from None
    data = validate_manifest(data, rel)  # with a side file: the rest, and the side file's reference
    side = data.get(SHARDS_FILE)
    if side is None:
        return Manifest.from_dict(data)
    head = {k: v for k, v in data.items() if k != SHARDS_FILE}
    manifest = Manifest.from_dict({**head, "shards": read_side_file(output, side, rel)})
    return dataclasses.replace(manifest, entries_file=side["path"])


class SideFileError(ManifestInvalidError):
    """A version's side file is missing, or not what the version says (size, checksum, entries)."""


def side_file_name(version: int, sha256: str) -> str:
    return f"{VERSIONS_DIR}/v{version:06d}.shards.{sha256[:16]}.parquet"


def read_side_file(output: OutputDir, ref: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The entries of the side file `ref` names (in manifest `name`), once its size, checksum,
    entry count and values are checked; one line naming it otherwise (SideFileError for a
    missing file or one that is not the file `name` names; ManifestInvalidError for bad values)."""
    path = ref["path"]
    try:
        blob = output.read_bytes(path)
    except FileNotFoundError:
        raise SideFileError(f"{path}: missing (the entries file {name} names)") from None
    sha = hashlib.sha256(blob).hexdigest()
    for what, found, said in (("bytes", len(blob), ref["bytes"]), ("sha256", sha, ref["sha256"])):
        if found != said:
            raise SideFileError(f"{path}: {what} {found}, {name} says {said}")
    try:
        table = pq.read_table(pa.BufferReader(blob))
    except (pa.ArrowException, OSError) as exc:
        raise ManifestInvalidError(f"{path}: not a Parquet file ({exc})") from None
    if table.num_rows != ref["entries"]:
        raise SideFileError(f"{path}: {table.num_rows} entries, {name} says {ref['entries']}")
    check_table(table, path)
    return table_to_entries(table)


def _encode(output: OutputDir, manifest: Manifest, name: str) -> bytes:
    """The JSON of version `name`; over the threshold, its side file is written first."""
    data = manifest.to_dict()
    if len(manifest.shards) < SIDE_FILE_MIN_ENTRIES:
        data = validate_manifest(data, name)  # never write what the next load would refuse
        return json.dumps(data, indent=1, ensure_ascii=False).encode()
    table = entries_to_table(data["shards"])
    check_table(table, name)  # what the load checks, as for JSON entries above
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    blob = sink.getvalue().to_pybytes()
    sha = hashlib.sha256(blob).hexdigest()
    side = side_file_name(manifest.version, sha)
    ref = {"path": side, "bytes": len(blob), "sha256": sha, "entries": table.num_rows, "format": "parquet"}
    head = dict((SHARDS_FILE, ref) if k == "shards" else (k, v) for k, v in data.items())
    head = validate_manifest(head, name)
    try:
        output.write_create_only(side, blob)
    except FileExistsError:  # the same name is the same content (a retried commit)
        pass
    return json.dumps(head, indent=1, ensure_ascii=False).encode()


def load_latest(output: OutputDir, versions: list[int] | None = None) -> Manifest | None:
    """The newest committed manifest version, or None for an output never committed to.
    `versions`: the output's version numbers when the caller has listed them already."""
    if versions is None:
        versions = list_versions(output)
    if versions:
        return read_manifest(output, version_name(versions[-1]))
    if output.exists(MANIFEST):  # written by hand or by an older layout
        return read_manifest(output, MANIFEST)
    return None


def next_manifest(
    previous: Manifest | None,
    versions: list[int],
    space: EmbeddingSpace,
    input: dict[str, Any],
    shards: list[ShardEntry],
    changes: dict[str, Any],
    output_format: str,
    run: RunInfo,
) -> Manifest:
    """The version after the newest one (`versions`: the numbers listed at the run's start;
    `previous`: that version, or a hand-written manifest.json), holding `shards` in source order,
    and each source's units in file order."""
    number = (versions[-1] if versions else (previous.version if previous else 0)) + 1
    return Manifest(
        version=number,
        previous=version_name(previous.version) if previous else None,
        space=space,
        input=input,
        shards=tuple(sorted(shards, key=lambda e: (e.source.uri, e.unit.start if e.unit else 0))),
        changes=changes,
        output_format=output_format,
        run=run,
    )


def commit(output: OutputDir, manifest: Manifest) -> str:
    """Write `manifest` as version `manifest.version` (create-only), then publish it."""
    name = version_name(manifest.version)
    blob = _encode(output, manifest, name)
    try:
        output.write_create_only(name, blob)
    except FileExistsError:
        raise ConcurrentCommitError(
            f"{output.uri}/{name} was committed by another run while this one worked; "
            "nothing of this run is referenced (its files are left for `e5ray gc`). Run again to refresh."
        ) from None
    # Publish only if no later version was committed meanwhile, so manifest.json never
    # moves backwards (a later run republishes the newest version in any case).
    if list_versions(output)[-1] == manifest.version:
        output.write_atomic(MANIFEST, blob)
    return name
