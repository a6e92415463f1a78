"""Reading an output back: exactly the current version's files, as a pyarrow Dataset.

    import e5ray
    ds = e5ray.read_embeddings("out/sample")           # pyarrow.dataset.Dataset
    table = ds.to_table()                               # id, embedding[, kept columns]
    lf = e5ray.read.to_polars("out/sample")            # polars LazyFrame (embedding: Array(f32, dim))
    rel = e5ray.read.to_duckdb("out/sample")           # DuckDB relation (embedding: FLOAT[dim])

Why not `pq.read_table(OUTPUT)` or a `*.parquet` glob: after a refresh the output also
holds superseded shards (kept for older versions until `gc`), and older layouts keep
markers and rejects beside the shards. The manifest is the only list of what the current
version holds, so these readers take their file list from it. Manifests of format 1
(`path` per shard) and 2 (`files` per shard) are both read.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from e5ray.manifest import MANIFEST, list_versions, version_name
from e5ray.storage import filesystem_for, is_local_fs, join


def current_manifest(output: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The newest committed manifest version (as JSON), or FileNotFoundError."""
    fs, root = filesystem_for(output, storage_options)
    versions = list_versions(output, storage_options)
    name = version_name(versions[-1]) if versions else MANIFEST
    try:
        with fs.open(join(root, name), "rb") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        raise FileNotFoundError(f"{output} has no manifest: not an e5ray output, or no run has committed yet") from None


def data_files(manifest: dict[str, Any]) -> list[str]:
    """Paths (relative to the output root) of the embedding files of a manifest."""
    paths: list[str] = []
    for shard in manifest["shards"]:
        if "files" in shard:
            paths += [f["path"] for f in shard["files"]]
        else:
            paths.append(shard["path"])
    return paths


def read_embeddings(
    output: str, storage_options: dict[str, Any] | None = None, manifest: dict[str, Any] | None = None
) -> pads.Dataset:
    """The current version of `output` (local or s3://) as a pyarrow Dataset of its Parquet shards."""
    manifest = manifest or current_manifest(output, storage_options)
    fs, root = filesystem_for(output, storage_options)
    files = [join(root, rel) for rel in data_files(manifest)]
    filesystem: pafs.FileSystem = (
        pafs.LocalFileSystem() if is_local_fs(fs) else pafs.PyFileSystem(pafs.FSSpecHandler(fs))
    )
    if not files:  # a version over an empty corpus: an empty dataset of the right shape
        dim = int(manifest["space"]["dim"])
        schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), dim))])
        return pads.dataset(schema.empty_table())
    return pads.dataset(files, format="parquet", filesystem=filesystem)


def to_polars(output: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The current version as a Polars LazyFrame (needs `polars`)."""
    import polars as pl

    return pl.scan_pyarrow_dataset(read_embeddings(output, storage_options))


def to_duckdb(output: str, connection: Any = None, storage_options: dict[str, Any] | None = None) -> Any:
    """The current version as a DuckDB relation with `embedding` as FLOAT[dim] (needs `duckdb`),
    ready for `array_cosine_similarity(embedding, ?::FLOAT[dim])`."""
    import duckdb

    manifest = current_manifest(output, storage_options)
    dim = int(manifest["space"]["dim"])
    con = connection or duckdb.connect()
    dataset = read_embeddings(output, storage_options, manifest)
    view = f"e5ray_{abs(hash(output)) % 10**8}"
    con.register(view, dataset)
    others = [name for name in dataset.schema.names if name not in ("id", "embedding")]
    select = ", ".join(["id", f"embedding::FLOAT[{dim}] AS embedding", *(f'"{c}"' for c in others)])
    return con.sql(f"SELECT {select} FROM {view}")
