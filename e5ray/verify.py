"""`e5ray verify`: check that an output is exactly what its manifest says."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.manifest import MANIFEST, read_manifest
from e5ray.storage import filesystem_for, join, sha256_of


def verify_output(
    output_uri: str, storage_options: dict[str, Any] | None = None, manifest_path: str = MANIFEST
) -> list[str]:
    """Every problem found, as readable lines; an empty list means the output is sound."""
    fs, root = filesystem_for(output_uri, storage_options)
    try:
        manifest = read_manifest(output_uri, manifest_path, storage_options)
    except FileNotFoundError:
        return [f"{output_uri}: no {manifest_path}"]
    problems: list[str] = []
    dim = manifest["space"]["dim"]
    for shard in manifest["shards"]:
        path = join(root, shard["path"])
        if not fs.exists(path):
            problems.append(f"{shard['path']}: missing")
            continue
        size = fs.size(path)
        if size != shard["bytes"]:
            problems.append(f"{shard['path']}: {size} bytes, manifest says {shard['bytes']}")
        sha = sha256_of(fs, path)
        if sha != shard["sha256"]:
            problems.append(f"{shard['path']}: sha256 {sha[:16]}..., manifest says {shard['sha256'][:16]}...")
            continue
        try:
            with fs.open(path, "rb") as fh:
                meta = pq.ParquetFile(fh)
                schema, rows = meta.schema_arrow, meta.metadata.num_rows
        except Exception as exc:  # any unreadable file is a problem to report, not a crash
            problems.append(f"{shard['path']}: unreadable Parquet ({exc})")
            continue
        expected = pa.list_(pa.float32(), dim)
        if schema.names != ["id", "embedding"] or schema.field("embedding").type != expected:
            problems.append(f"{shard['path']}: schema {schema}, expected id + embedding {expected}")
        if rows != shard["rows"]:
            problems.append(f"{shard['path']}: {rows} rows, manifest says {shard['rows']}")
        if shard["rows"] + shard["rejected"] != shard["input_rows"]:
            problems.append(
                f"{shard['path']}: rows {shard['rows']} + rejected {shard['rejected']} "
                f"!= input rows {shard['input_rows']}"
            )
        rejects = shard.get("rejects")
        if shard["rejected"] and not rejects:
            problems.append(f"{shard['path']}: {shard['rejected']} rejected rows but no rejects file")
        for ref in (rejects, shard.get("ids")):  # the ids file: e5ray.dupes
            if not ref:
                continue
            rpath = join(root, ref["path"])
            if not fs.exists(rpath):
                problems.append(f"{ref['path']}: missing")
            elif sha256_of(fs, rpath) != ref["sha256"]:
                problems.append(f"{ref['path']}: sha256 differs from the manifest")
    sums = {
        k: sum(s[f] for s in manifest["shards"])
        for k, f in (("embedded", "rows"), ("rejected", "rejected"), ("input_rows", "input_rows"))
    }
    for key, value in sums.items():
        if manifest["totals"].get(key) != value:
            problems.append(f"totals.{key} is {manifest['totals'].get(key)}, shards add up to {value}")
    return problems
