"""`e5ray export OUTPUT --to lance DIR [--incremental]`: the current version as a LanceDB table.

LanceDB (and Lance) serve vector search straight from disk or object storage. A full export
streams the manifest's files (never a glob, see `e5ray.output.read`) into table `--table` of
the LanceDB database at DIR, replacing a table of that name. The table holds `id`,
`embedding` (a fixed-size list of float32) and the kept columns (not the content hash, which
is e5ray's own), and records in its schema metadata the space (`e5ray.space`) and the version
it holds (`e5ray.table_version`).

`--incremental` applies the change feed since that recorded version (`e5ray.output.change_feed`):
one delete of every row that goes or changes (`id IN (...)`: the deleted ids and the upserts'),
then the upserts appended, then the new version recorded. So a nightly sync writes what changed,
not the table. Why not LanceDB's merge-insert on `id` (used before): in LanceDB 0.40 its cost
grew with the vectors' width, as it reads the table's columns and not only `id`
(lance-format/lance#3480): 1,400 upserts into 20,200 rows took 36 ms at width 384 and 127 ms at
1,024, most of a sync; a delete reads the `id` column only (BENCHMARKS.md). The cost: between the two commits a reader
of the table misses the changed rows. It falls back to a full write, and says why, for a table
that does not exist or records no version, a table of another space, or a version the feed
cannot serve (gc removed it, or a version since replaced everything).
A sync killed midway is finished by the next one: it deletes the same ids again (the rows it
appended among them) and appends again, and the version is recorded last. A vector index on the
table survives: delete and append keep it, the new rows are searched unindexed (flat) until
`table.optimize()` folds them in (LanceDB 0.40, tested). A full write replaces the table, and
its indexes with it.

Needs the optional extra `lance` (`pip install "e5ray[lance]"`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from e5ray.errors import ChangesUnavailableError, UsageError
from e5ray.output.change_feed import open_changes
from e5ray.output.content_hash import HASH_COLUMN
from e5ray.output.manifest import Manifest
from e5ray.output.read import current_manifest, read_embeddings

EXPORT_FORMATS = ("lance",)
VERSION_KEY = "e5ray.table_version"  # the output version a table holds
SPACE_KEY = "e5ray.space"


def export_lance(
    output: str,
    directory: str,
    table: str = "embeddings",
    storage_options: dict[str, Any] | None = None,
    incremental: bool = False,
) -> dict[str, Any]:
    """Write the current version of `output` as LanceDB table `table` in `directory`; with
    `incremental`, apply only the changes since the version the table records where it can."""
    # Lance logs from Rust; its "dataset will be created" warning on every new table is not news.
    os.environ.setdefault("LANCE_LOG", "error")
    try:
        import lancedb
    except ImportError:
        raise UsageError('export --to lance needs lancedb: pip install "e5ray[lance]"') from None
    manifest = current_manifest(output, storage_options)
    db = lancedb.connect(directory)
    done = {"directory": directory, "table": table, "version": manifest.version, "dim": manifest.space.dim}
    reason: str | None = "not asked (--incremental applies changes)"
    if incremental:
        lance_table, reason = _open_in_space(db, table, manifest)
        if lance_table is not None:
            try:
                return {**done, **_apply_changes(lance_table, output, manifest, storage_options)}
            except ChangesUnavailableError as exc:
                reason = str(exc)
    created = _write_full(db, table, output, manifest, storage_options)
    return {**done, "mode": "full", "reason": reason, "rows": created.count_rows()}


def _open_in_space(db: Any, table: str, manifest: Manifest) -> tuple[Any, str | None]:
    """(the table, None) when changes can be applied to it; (None, why it must be written
    whole) otherwise. Opened once: the caller syncs through the same handle."""
    try:
        lance_table = db.open_table(table)
    except ValueError:  # LanceDB 0.40: "Table ... was not found"
        return None, f"no table {table!r} yet"
    metadata = lance_table.schema.metadata or {}
    if VERSION_KEY.encode() not in metadata:
        return None, f"table {table!r} records no e5ray version (written before --incremental)"
    space = json.loads(metadata.get(SPACE_KEY.encode(), b"{}"))
    if space.get("fingerprint") != manifest.space.fingerprint:
        return None, f"table {table!r} holds another space ({str(space.get('fingerprint'))[:12]})"
    return lance_table, None


def _apply_changes(
    lance_table: Any, output: str, manifest: Manifest, storage_options: dict[str, Any] | None
) -> dict[str, Any]:
    recorded = int(lance_table.schema.metadata[VERSION_KEY.encode()])
    done = {"mode": "incremental", "since": recorded, "upserts": 0, "deletes": 0}
    if recorded == manifest.version:
        return {**done, "rows": lance_table.count_rows()}
    # The manifest read once (ChangesUnavailableError: a full write); a version committed meanwhile is
    # served by the feed, and the table records the feed's version, never one it did not reach.
    feed = open_changes(output, recorded, storage_options, current=manifest)
    deletes = feed.delete_ids.to_pylist()
    # Every row that goes or changes goes first (the ids of the upserts the feed yields, never
    # one it leaves out because the table holds that very row), then the upserts are appended.
    upserted = feed.upserted_ids().to_pylist()
    if deletes or upserted:
        lance_table.delete(_id_filter(deletes + upserted))
    if upserted:
        upserts = feed.upserts()
        plain = upserts.schema.remove_metadata()  # the table's metadata (space, version) stays the table's
        lance_table.add(pa.RecordBatchReader.from_batches(plain, (b.replace_schema_metadata(None) for b in upserts)))
    lance_table.to_lance().update_schema_metadata({VERSION_KEY: str(feed.version)})
    done.update(version=feed.version, upserts=feed.upserted, deletes=len(deletes))
    return {**done, "rows": lance_table.count_rows()}


def _id_filter(ids: list[Any]) -> Any:
    """`id IN (ids)` for LanceDB: an expression where lancedb has them (0.40 deleted 80,000 ids
    from 1M rows in 0.27 s this way, 0.60 s from the SQL text), else the SQL text."""
    try:
        from lancedb.expr import col
    except ImportError:  # lancedb before expressions
        return f"id IN ({', '.join(_sql_literal(i) for i in ids)})"
    return col("id").isin(ids)


def _sql_literal(value: Any) -> str:
    return str(int(value)) if isinstance(value, int) else "'" + str(value).replace("'", "''") + "'"


def _write_full(db: Any, table: str, output: str, manifest: Manifest, storage_options: dict[str, Any] | None) -> Any:
    dataset = read_embeddings(output, storage_options, manifest)
    columns = [name for name in dataset.schema.names if name != HASH_COLUMN]
    metadata = {
        **(dataset.schema.metadata or {}),
        SPACE_KEY.encode(): json.dumps(manifest.space.to_dict()).encode(),
        VERSION_KEY.encode(): str(manifest.version).encode(),
    }
    schema = pa.schema([dataset.schema.field(name) for name in columns], metadata=metadata)
    reader = dataset.scanner(columns=columns).to_reader()

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in reader:
            yield batch.replace_schema_metadata(metadata)

    return db.create_table(table, data=batches(), schema=schema, mode="overwrite")
