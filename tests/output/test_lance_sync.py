"""`e5ray export --to lance --incremental`: a LanceDB table kept in sync with the change feed equals a
full export, row for row and vector for vector, on local disk and with the output on S3; a table it
cannot bring forward is written whole, and says why; a vector index on the table survives a sync;
a sync that only deletes, only upserts or changes nothing touches those rows alone.

The corpus goes through three refreshes (tests/change_utils.py). In process, tiny test model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from change_utils import versions
from corpus_utils import embed_job, make_texts, write_shard
from job_utils import config

from e5ray.cli.app import main as cli_main
from e5ray.output.change_feed import open_changes
from e5ray.output.export_lance import export_lance
from e5ray.output.gc import collect_garbage
from e5ray.store.filesystem import OutputDir

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lancedb") is None, reason="lancedb not installed")


def table_rows(db: Path, name: str) -> dict[Any, np.ndarray]:
    import lancedb

    table = lancedb.connect(str(db)).open_table(name).to_arrow()
    vectors = table["embedding"].combine_chunks().flatten().to_numpy().reshape(table.num_rows, -1)
    ids = table["id"].to_pylist()
    assert len(set(ids)) == len(ids)
    return dict(zip(ids, vectors, strict=True))


def assert_same_table(db: Path, got: str, want: str) -> None:
    a, b = table_rows(db, got), table_rows(db, want)
    assert sorted(a) == sorted(b) and len(a) == len(b)
    np.testing.assert_allclose(np.stack([a[i] for i in sorted(a)]), np.stack([b[i] for i in sorted(a)]), atol=1e-6)


def synced(
    output: str, db: Path, drive: Callable[[Callable[[], None]], Iterator[int]], run: Any
) -> list[dict[str, Any]]:
    """`drive(step)` writes each version's corpus and calls `step`, which runs the job (`run`) and exports:
    `stepwise` incrementally after every version, `jump` at version 1 and at the end (the changes
    since 1 in one go), `whole` fully at the end."""
    reports = []

    def step() -> None:
        run()
        reports.append(export_lance(output, str(db), "stepwise", incremental=True))
        if len(reports) == 1:
            export_lance(output, str(db), "jump", incremental=True)

    list(drive(step))
    reports.append(export_lance(output, str(db), "jump", incremental=True))
    export_lance(output, str(db), "whole")
    return reports


def test_an_incremental_lance_export_equals_a_full_one(tmp_path, bert_model_dir):
    inp, out, db = tmp_path / "in", tmp_path / "out", tmp_path / "db"
    inp.mkdir()
    run = lambda: embed_job(config(inp, out, bert_model_dir))  # noqa: E731
    reports = synced(str(out), db, lambda step: versions(str(inp), step), run)
    first, *steps, jump = reports
    assert (first["mode"], first["reason"]) == ("full", "no table 'stepwise' yet")
    assert [r["mode"] for r in steps] == ["incremental"] * 3
    assert [(r["since"], r["upserts"], r["deletes"]) for r in steps] == [(1, 4, 2), (2, 2, 1), (3, 3, 1)]
    assert (jump["mode"], jump["since"], jump["upserts"], jump["deletes"]) == ("incremental", 1, 6, 2)
    assert jump["rows"] == 80
    assert_same_table(db, "stepwise", "whole")
    assert_same_table(db, "jump", "whole")


def test_a_vector_index_survives_a_sync(tmp_path, bert_model_dir, capsys):
    import lancedb
    from lancedb.index import IvfFlat

    inp, out, db = tmp_path / "in", tmp_path / "out", tmp_path / "db"
    inp.mkdir()
    steps = versions(str(inp), lambda: embed_job(config(inp, out, bert_model_dir)))
    next(steps)
    assert cli_main(["export", str(out), "--to", "lance", str(db), "--incremental"]) == 0
    table = lancedb.connect(str(db)).open_table("embeddings")
    table.create_index("embedding", config=IvfFlat(distance_type="cosine", num_partitions=2))
    list(steps)
    assert cli_main(["export", str(out), "--to", "lance", str(db), "--incremental"]) == 0
    assert "incremental since version 1: 6 upserts, 2 deletes" in capsys.readouterr().out
    table = lancedb.connect(str(db)).open_table("embeddings")
    (index,) = table.list_indices()
    stats = table.index_stats(index.name)
    assert stats.num_unindexed_rows == 6 and stats.num_indexed_rows == 74  # the upserts wait for optimize()
    hit = table.search(table_rows(db, "embeddings")[102]).limit(1).to_list()[0]
    assert hit["id"] == 102


def test_a_table_the_feed_cannot_bring_forward_is_written_whole(tmp_path, bert_model_dir):
    inp, out, db = tmp_path / "in", tmp_path / "out", tmp_path / "db"
    inp.mkdir()
    steps = versions(str(inp), lambda: embed_job(config(inp, out, bert_model_dir)))
    next(steps)
    export_lance(str(out), str(db), incremental=True)
    list(steps)
    collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    done = export_lance(str(out), str(db), incremental=True)
    assert done["mode"] == "full" and "gc removed version 1" in done["reason"] and done["rows"] == 80
    export_lance(str(out), str(db), "whole")
    assert_same_table(db, "embeddings", "whole")


def test_an_incremental_lance_export_from_s3_equals_a_full_one(s3_server, s3_bucket, s3_env, bert_model_dir, tmp_path):
    fs, bucket = s3_server.filesystem(), s3_bucket
    uri, db = f"s3://{bucket}/emb", tmp_path / "db"
    cfg = config(f"s3://{bucket}/corpus", uri, bert_model_dir)
    reports = synced(uri, db, lambda step: versions(f"{bucket}/corpus", step, fs), lambda: embed_job(cfg))
    assert [r["mode"] for r in reports] == ["full", "incremental", "incremental", "incremental", "incremental"]
    assert_same_table(db, "stepwise", "whole")
    assert_same_table(db, "jump", "whole")
    shutil.rmtree(db)


@pytest.mark.parametrize("change", ["deletes only", "upserts only", "nothing"])
def test_a_sync_that_only_deletes_or_only_upserts_touches_those_rows_alone(tmp_path, bert_model_dir, change):
    inp, out, db = tmp_path / "in", tmp_path / "out", tmp_path / "db"
    inp.mkdir()
    texts = make_texts(30, seed=8)
    write_shard(inp / "a.parquet", list(range(30)), texts)
    embed_job(config(inp, out, bert_model_dir))
    export_lance(str(out), str(db), "synced", incremental=True)
    if change == "deletes only":
        write_shard(inp / "a.parquet", list(range(3, 30)), texts[3:])
    elif change == "upserts only":
        write_shard(inp / "a.parquet", list(range(31)), [*texts[:5], "an edited row", *texts[6:], "an added row"])
    else:
        pq.write_table(pa.table({"id": list(range(30)), "text": texts}), inp / "a.parquet")  # rewritten, same rows
    embed_job(config(inp, out, bert_model_dir))
    done = export_lance(str(out), str(db), "synced", incremental=True)
    want = {"deletes only": (0, 3, 27), "upserts only": (2, 0, 31), "nothing": (0, 0, 30)}[change]
    assert done["mode"] == "incremental" and (done["upserts"], done["deletes"], done["rows"]) == want
    export_lance(str(out), str(db), "whole")
    assert_same_table(db, "synced", "whole")


def test_a_sync_keeps_the_rows_of_a_file_removed_and_restored_since_the_tables_version(tmp_path, bert_model_dir):
    # b.parquet gone in version 2 and back, byte for byte, in version 3: its output file is
    # version 1's again (content-addressed), so the feed since 1 upserts its ids from no new
    # file (the table holds those very rows) and the sync must not delete them.
    inp, out, db = tmp_path / "in", tmp_path / "out", tmp_path / "db"
    inp.mkdir()
    texts = make_texts(20, seed=9)
    write_shard(inp / "a.parquet", list(range(10)), texts[:10])
    write_shard(inp / "b.parquet", list(range(10, 20)), texts[10:])
    embed_job(config(inp, out, bert_model_dir))
    export_lance(str(out), str(db), "synced", incremental=True)
    kept, stat = (inp / "b.parquet").read_bytes(), (inp / "b.parquet").stat()
    (inp / "b.parquet").unlink()
    embed_job(config(inp, out, bert_model_dir))
    (inp / "b.parquet").write_bytes(kept)
    os.utime(inp / "b.parquet", ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the very file: same fingerprint
    embed_job(config(inp, out, bert_model_dir))
    feed = open_changes(str(out), 1)
    assert len(feed.upsert_ids) == 10 and len(feed.upserted_ids()) == 0  # left out: the table holds them
    done = export_lance(str(out), str(db), "synced", incremental=True)
    assert (done["mode"], done["upserts"], done["deletes"], done["rows"]) == ("incremental", 0, 0, 20)
    export_lance(str(out), str(db), "whole")
    assert_same_table(db, "synced", "whole")
