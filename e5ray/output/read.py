"""Reading an output back: exactly the current version's files, as a pyarrow Dataset.

    import e5ray
    ds = e5ray.read_embeddings("out/sample")           # pyarrow.dataset.Dataset
    table = ds.to_table()                               # id, embedding[, kept columns]
    lf = e5ray.output.read.to_polars("out/sample")            # polars LazyFrame (embedding: Array(f32, dim))
    rel = e5ray.output.read.to_duckdb("out/sample")           # DuckDB relation (embedding: FLOAT[dim])

Why not `pq.read_table(OUTPUT/shards)` or a `*.parquet` glob: after a refresh the output
also holds superseded shards (kept for older versions until `gc`). The manifest is the
only list of what the current version holds, so these readers take their file list from
it (manifests of format 1 and 2 alike; `e5ray.output.versions` converts on load).
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from e5ray.errors import UsageError
from e5ray.output.manifest import Manifest
from e5ray.output.versions import load_latest
from e5ray.store.filesystem import OutputDir


def current_manifest(output: str, storage_options: dict[str, Any] | None = None) -> Manifest:
    """The newest committed manifest version of `output`."""
    manifest = load_latest(OutputDir(output, storage_options))
    if manifest is None:
        raise UsageError(f"{output} has no manifest: not an e5ray output, or no run has committed to it yet")
    return manifest


def read_embeddings(
    output: str, storage_options: dict[str, Any] | None = None, manifest: Manifest | None = None
) -> pads.Dataset:
    """The current version of `output` (local or s3://) as a pyarrow Dataset of its shards."""
    manifest = manifest or current_manifest(output, storage_options)
    if manifest.output_format != "parquet":
        raise UsageError(f"{output} holds {manifest.output_format} shards; read_embeddings reads Parquet outputs")
    handle = OutputDir(output, storage_options)
    files = [handle.path(ref.path) for entry in manifest.shards for ref in entry.files]
    if not files:  # a version over an empty corpus: an empty dataset of the right shape
        schema = pa.schema([("id", pa.int64()), ("embedding", pa.list_(pa.float32(), manifest.space.dim))])
        return pads.dataset(schema.empty_table())
    filesystem = pafs.LocalFileSystem() if handle.is_local else pafs.PyFileSystem(pafs.FSSpecHandler(handle.fs))
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
    con = connection or duckdb.connect()
    dataset = read_embeddings(output, storage_options, manifest)
    view = f"e5ray_{abs(hash(output)) % 10**8}"
    con.register(view, dataset)
    others = [name for name in dataset.schema.names if name not in ("id", "embedding")]
    columns = ["id", f"embedding::FLOAT[{manifest.space.dim}] AS embedding", *(f'"{c}"' for c in others)]
    return con.sql(f"SELECT {', '.join(columns)} FROM {view}")
