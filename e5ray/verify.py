"""`e5ray verify`: check that an output is exactly what its manifest says.

Sizes and checksums of every file, then each embedding file's own check by the sink
that wrote it (the manifest's `output.format`), row counts, and the totals. Units are
checked in parallel threads (each check is I/O: a read of the whole file), so the
wall time is the store's bandwidth, not its latency times the number of files.

`quick`: names and sizes from one listing of the output, and the counts; no file is
read. It catches a missing, truncated or extra-long file, not one rewritten in place
with the same size.
"""

from __future__ import annotations

import pyarrow.parquet as pq

from e5ray.content_hash import HASH_COLUMN, HASH_TYPE, SCHEME
from e5ray.manifest import FileRef, Manifest, ShardEntry
from e5ray.resume import Listed, list_output, parallel_map
from e5ray.sinks.base import get_sink
from e5ray.storage import OutputDir
from e5ray.versions import MANIFEST, read_manifest


def verify_output(output: OutputDir, manifest_path: str = MANIFEST, quick: bool = False) -> list[str]:
    """Every problem found, as readable lines; an empty list means the output is sound."""
    try:
        manifest = read_manifest(output, manifest_path)
    except FileNotFoundError:
        return [f"{output.uri}: no {manifest_path}"]
    listing = list_output(output)
    found = parallel_map(lambda shard: _shard_problems(output, manifest, shard, listing, quick), manifest.shards)
    problems = [p for shard_problems in found for p in shard_problems]
    problems += _totals_problems(manifest)
    return problems


def _shard_problems(
    output: OutputDir, manifest: Manifest, shard: ShardEntry, listing: dict[str, Listed], quick: bool
) -> list[str]:
    sink = get_sink(manifest.output_format)
    label = shard.files[0].path if shard.files else shard.source.relpath
    problems: list[str] = []
    rows, readable = 0, True
    for ref in shard.files:
        found = _file_problems(output, ref, listing, quick)
        if not found and not quick:
            file_rows, found = sink.check(output.fs, output.path(ref.path), manifest.space.dim)
            if not found and shard.hash_scheme is not None and file_rows:
                found = hash_column_problems(output, ref.path, shard.hash_scheme)
            found = [f"{ref.path}: {p}" for p in found]
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
    for extra in (shard.rejects, shard.ids):  # the ids file: e5ray.dupes
        if extra is not None:
            problems += _file_problems(output, extra, listing, quick)
    return problems


def _file_problems(output: OutputDir, ref: FileRef, listing: dict[str, Listed], quick: bool) -> list[str]:
    # The listing covers shards/, markers/, rejects/ and ids/; a file elsewhere is asked about directly.
    if ref.path in listing:
        size = listing[ref.path].size
    elif output.exists(ref.path):
        size = output.size(ref.path)
    else:
        return [f"{ref.path}: missing"]
    problems = []
    if size != ref.bytes:
        problems.append(f"{ref.path}: {size} bytes, manifest says {ref.bytes}")
    if quick:
        return problems
    sha = output.sha256(ref.path)
    if sha != ref.sha256:
        problems.append(f"{ref.path}: sha256 {sha[:16]}..., manifest says {ref.sha256[:16]}...")
    return problems


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


def hash_column_problems(output: OutputDir, rel: str, scheme: str) -> list[str]:
    """A file whose entry names a hash scheme must have the content_hash column, of its type."""
    if scheme != SCHEME:
        return [f"hash scheme {scheme!r} is not one this e5ray knows ({SCHEME})"]
    with output.fs.open(output.path(rel), "rb") as fh:
        schema = pq.ParquetFile(fh).schema_arrow
    if HASH_COLUMN not in schema.names or schema.field(HASH_COLUMN).type != HASH_TYPE:
        return [f"no {HASH_COLUMN} column of type {HASH_TYPE}, though the manifest names a hash scheme"]
    return []
