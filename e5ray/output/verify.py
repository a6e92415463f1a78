"""`e5ray verify`: check that an output is exactly what its manifest says.

Sizes and checksums of every file, then each embedding file's own check by the sink
that wrote it (the manifest's `output.format`), row counts, and the totals. Units are
checked in parallel threads (each check is I/O: a read of the whole file), so the
wall time is the store's bandwidth, not its latency times the number of files. Each file
is opened once, with the size from the listing: its checksum and the sink's checks read
the same handle (on S3 a file under the read-ahead block is one GET, no HEAD).

`quick`: names and sizes from one listing of the output, and the counts; no file is
read. It catches a missing, truncated or extra-long file, not one rewritten in place
with the same size. The version's change file (`e5ray.output.change_file`) is read and
checked (size, sha256, rows and counts) in either mode: it is small.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow.parquet as pq

from e5ray.output.change_file import change_file_problems
from e5ray.output.content_hash import HASH_COLUMN, HASH_TYPE, SCHEME
from e5ray.output.listing import Listed, list_output, parallel_map
from e5ray.output.manifest import FileRef, Manifest, ShardEntry
from e5ray.output.sinks.base import get_sink
from e5ray.output.versions import MANIFEST, SideFileError, read_manifest
from e5ray.store.filesystem import OutputDir, feed_digest, open_known_size

# Runs a function over items somewhere else and returns the results in order
# (e5ray.executors.ray.map_on_ray: Ray tasks across the cluster).
Mapper = Callable[[Callable[["UnitCheck"], list[str]], list["UnitCheck"]], list[list[str]]]


def verify_output(
    output: OutputDir, manifest_path: str = MANIFEST, quick: bool = False, mapper: Mapper | None = None
) -> list[str]:
    """Every problem found, as readable lines; an empty list means the output is sound.

    `mapper`: where the per-unit checks run instead of this process's threads (`verify
    --on-ray` passes Ray's, so each check reads its files where it runs and the driver reads
    no output file). The checks are plain data (`UnitCheck`), so any mapper can carry them."""
    try:
        manifest = read_manifest(output, manifest_path)
    except FileNotFoundError:
        return [f"{output.uri}: no {manifest_path}"]
    except SideFileError as exc:  # the entries file (checked on load: exists, size, sha256, entries)
        return [str(exc)]
    listing = list_output(output)
    checks = [UnitCheck.of(output, manifest, shard, listing, quick) for shard in manifest.shards]
    if mapper is not None and not quick:
        found = mapper(run_unit_check, checks)
    else:
        found = parallel_map(lambda check: check.run(output), checks)
    problems = [p for shard_problems in found for p in shard_problems]
    problems += _totals_problems(manifest)
    problems += change_file_problems(output, manifest.row_changes, manifest_path)
    return problems


@dataclass(frozen=True)
class UnitCheck:
    """One unit's checks as plain data, so that they can run in another process."""

    uri: str
    storage_options: dict[str, Any] | None
    output_format: str
    dim: int
    shard: dict[str, Any]
    listing: dict[str, Listed]  # only this unit's files
    quick: bool

    @classmethod
    def of(
        cls, output: OutputDir, manifest: Manifest, shard: ShardEntry, listing: dict[str, Listed], quick: bool
    ) -> UnitCheck:
        refs = [*shard.files, *(r for r in (shard.rejects, shard.ids) if r is not None)]
        mine = {ref.path: listing[ref.path] for ref in refs if ref.path in listing}
        fmt, dim = manifest.output_format, manifest.space.dim
        return cls(output.uri, output.storage_options, fmt, dim, shard.to_dict(), mine, quick)

    def run(self, output: OutputDir) -> list[str]:
        shard = ShardEntry.from_dict(self.shard)
        return _shard_problems(output, self.output_format, self.dim, shard, self.listing, self.quick)


def run_unit_check(check: UnitCheck) -> list[str]:
    """`check` where it runs (a Ray task): its own handle on the output."""
    return check.run(OutputDir(check.uri, check.storage_options))


def _shard_problems(
    output: OutputDir, output_format: str, dim: int, shard: ShardEntry, listing: dict[str, Listed], quick: bool
) -> list[str]:
    sink = get_sink(output_format)
    label = shard.files[0].path if shard.files else shard.source.relpath
    problems: list[str] = []
    rows, readable = 0, True
    for ref in shard.files:
        size, found = _size_problems(output, ref, listing)
        if size is not None and not quick:
            with _open_known(output, ref.path, size) as fh:
                found += _sha_problems(ref, fh)
                # On an object store the checks below read the same handle (its cache, no new request);
                # a local file is opened again, which costs nothing and shares no position with the hash.
                view, path = (output.fs, output.path(ref.path)) if output.is_local else (_OneFile(fh), ref.path)
                file_rows, checked = sink.check(view, path, dim)
                if not checked and shard.hash_scheme is not None and file_rows:
                    checked = hash_column_problems(view, path, shard.hash_scheme)
            found += [f"{ref.path}: {p}" for p in checked]
            rows += file_rows
        readable = readable and not found
        problems += found
    if readable and not quick and rows != shard.rows:
        problems.append(f"{label}: {rows} rows, manifest says {shard.rows}")
    documents = shard.embedded_documents  # rows, unless long texts were cut into windows
    if documents + shard.rejected != shard.input_rows:
        problems.append(f"{label}: embedded {documents} + rejected {shard.rejected} != input rows {shard.input_rows}")
    if shard.rejected and not shard.rejects:
        problems.append(f"{label}: {shard.rejected} rejected rows but no rejects file")
    for extra in (shard.rejects, shard.ids):  # the ids file: e5ray.output.dupes
        if extra is None:
            continue
        size, found = _size_problems(output, extra, listing)
        if size is not None and not quick:
            with _open_known(output, extra.path, size) as fh:
                found += _sha_problems(extra, fh)
        problems += found
    return problems


def _size_problems(output: OutputDir, ref: FileRef, listing: dict[str, Listed]) -> tuple[int | None, list[str]]:
    """The file's size (None: missing) and whether it is the manifest's."""
    # The listing covers shards/, markers/, rejects/ and ids/; a file elsewhere is asked about directly.
    if ref.path in listing:
        size = listing[ref.path].size
    elif output.exists(ref.path):
        size = output.size(ref.path)
    else:
        return None, [f"{ref.path}: missing"]
    return size, [f"{ref.path}: {size} bytes, manifest says {ref.bytes}"] if size != ref.bytes else []


def _open_known(output: OutputDir, rel: str, size: int) -> Any:
    # Sized from the listing: no HEAD before the reads below (the sha256 is the content check).
    return open_known_size(output.fs, output.path(rel), size)


def _sha_problems(ref: FileRef, fh: BinaryIO) -> list[str]:
    digest = hashlib.sha256()
    feed_digest(digest, fh)
    sha = digest.hexdigest()
    return [f"{ref.path}: sha256 {sha[:16]}..., manifest says {ref.sha256[:16]}..."] if sha != ref.sha256 else []


class _OneFile:
    """A filesystem view of one open file, so that a sink's `check(fs, path, dim)` reads the
    handle the checksum was computed from (from its start) instead of opening the file again."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def open(self, path: str, mode: str = "rb") -> Any:
        self._fh.seek(0)
        return contextlib.nullcontext(self._fh)


def _totals_problems(manifest: Manifest) -> list[str]:
    sums = {
        "embedded": sum(s.embedded_documents for s in manifest.shards),
        "rejected": sum(s.rejected for s in manifest.shards),
        "input_rows": sum(s.input_rows for s in manifest.shards),
    }
    return [
        f"totals.{key} is {manifest.totals.get(key)}, shards add up to {value}"
        for key, value in sums.items()
        if manifest.totals.get(key) != value
    ]


def hash_column_problems(fs: Any, path: str, scheme: str) -> list[str]:
    """A file whose entry names a hash scheme must have the content_hash column, of its type."""
    if scheme != SCHEME:
        return [f"hash scheme {scheme!r} is not one this e5ray knows ({SCHEME})"]
    with fs.open(path, "rb") as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    if HASH_COLUMN not in schema.names or schema.field(HASH_COLUMN).type != HASH_TYPE:
        return [f"no {HASH_COLUMN} column of type {HASH_TYPE}, though the manifest names a hash scheme"]
    return []
