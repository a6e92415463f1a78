"""`e5ray export OUTPUT --to lance DIR`: the current version as a LanceDB table.

LanceDB (and Lance) serve vector search straight from disk or object storage. The export
streams the manifest's files (never a glob, see `e5ray.output.read`) into table `--table` of
the LanceDB database at DIR, replacing a table of that name: a re-export after a
refresh gives the new version, whole. The table keeps the Parquet schema (`id`,
`embedding` as a fixed-size list of float32, kept columns) and the space in its schema
metadata. Needs the optional extra `lance` (`pip install "e5ray[lance]"`).
"""

from __future__ import annotations

import json
import os
from typing import Any

from e5ray.errors import UsageError
from e5ray.output.read import current_manifest, read_embeddings

EXPORT_FORMATS = ("lance",)


def export_lance(
    output: str, directory: str, table: str = "embeddings", storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write the current version of `output` as LanceDB table `table` in `directory`."""
    # Lance logs from Rust; its "dataset will be created" warning on every new table is not news.
    os.environ.setdefault("LANCE_LOG", "error")
    try:
        import lancedb
    except ImportError:
        raise UsageError('export --to lance needs lancedb: pip install "e5ray[lance]"') from None
    manifest = current_manifest(output, storage_options)
    dataset = read_embeddings(output, storage_options, manifest)
    schema = dataset.schema.with_metadata(
        {**(dataset.schema.metadata or {}), b"e5ray.space": json.dumps(manifest.space.to_dict()).encode()}
    )
    reader = dataset.scanner().to_reader()

    def batches() -> Any:
        for batch in reader:
            yield batch.replace_schema_metadata(schema.metadata)

    db = lancedb.connect(directory)
    created = db.create_table(table, data=batches(), schema=schema, mode="overwrite")
    return {
        "directory": directory,
        "table": table,
        "rows": created.count_rows(),
        "version": manifest.version,
        "dim": manifest.space.dim,
    }
