"""The output a reader meets: data files alone in shards/, markers and rejects in folders
of their own (older layouts still read), kept input columns, export to LanceDB."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import make_texts, write_shard
from job_utils import config

from e5ray.cli.app import main
from e5ray.job.run import run_job
from e5ray.output.gc import collect_garbage
from e5ray.store.filesystem import OutputDir


def write_rich_corpus(root) -> None:
    """A Parquet shard with lang and url columns, a JSONL shard with lang, one bad row."""
    root.mkdir(parents=True)
    table = pa.table(
        {
            "id": [1, 2, 3],
            "text": make_texts(3, 1),
            "lang": ["de", "fr", "ja"],
            "url": ["https://a/1", "https://a/2", None],
        }
    )
    pq.write_table(table, root / "part-0000.parquet")
    rows = [{"id": 10, "text": "hello", "lang": "en"}, {"id": 11, "text": "", "lang": "en"}, {"id": 12, "text": "x"}]
    (root / "part-0001.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_markers_and_rejects_have_folders_of_their_own(bert_model_dir, tmp_path):
    write_rich_corpus(tmp_path / "in")
    manifest = run_job(config(tmp_path / "in", tmp_path / "out", bert_model_dir))
    out = tmp_path / "out"
    assert sorted(p.suffix for p in (out / "shards").iterdir()) == [".parquet", ".parquet"]
    assert len(list((out / "markers").glob("*.done.json"))) == 2
    (rejects,) = (out / "rejects").iterdir()
    assert rejects.name.endswith(".rejects.jsonl") and json.loads(rejects.read_text())["reason"] == "empty text"
    assert [s.rejects.path for s in manifest.shards if s.rejects] == [f"rejects/{rejects.name}"]


def test_kept_columns_are_written_beside_the_vectors_with_their_types(bert_model_dir, tmp_path):
    write_rich_corpus(tmp_path / "in")
    cfg = config(tmp_path / "in", tmp_path / "out", bert_model_dir, keep_columns=("lang", "url", "text"))
    manifest = run_job(cfg)
    assert manifest.input["keep_columns"] == ["lang", "url", "text"]
    tables = {s.source.relpath: pq.read_table(tmp_path / "out" / s.files[0].path) for s in manifest.shards}
    parquet = tables["part-0000.parquet"]
    assert [c for c in parquet.column_names if c != "content_hash"] == ["id", "embedding", "lang", "url", "text"]
    assert parquet.schema.field("lang").type == pa.string()
    assert parquet["url"].to_pylist() == ["https://a/1", "https://a/2", None]
    jsonl = tables["part-0001.jsonl"]
    assert jsonl["id"].to_pylist() == [10, 12] and jsonl["lang"].to_pylist() == ["en", None]
    assert jsonl["text"].to_pylist() == ["hello", "x"]

    # Other kept columns are other output files: nothing is carried from the run without them.
    again = run_job(config(tmp_path / "in", tmp_path / "out", bert_model_dir, keep_columns=("lang",)))
    assert again.run.embedded_shards == 2


def test_a_kept_column_that_does_not_exist_is_refused_up_front(bert_model_dir, tmp_path, capsys):
    write_rich_corpus(tmp_path / "in")
    argv = ["embed", f"--input={tmp_path / 'in'}", f"--output={tmp_path / 'out'}", "--model=tiny"]
    argv += [f"--model-path={bert_model_dir}", "--executor=local", "--keep-columns=lang,title"]
    assert main(argv) == 2
    assert "--keep-columns 'title' not in part-0000.parquet" in capsys.readouterr().err
    assert main([*argv[:-1], "--keep-columns=id"]) == 2
    assert "already has id" in capsys.readouterr().err


def test_an_output_of_the_older_layout_resumes_and_is_collected(bert_model_dir, tmp_path):
    """Markers and rejects in shards/, as outputs written before the markers/ folder have them."""
    write_rich_corpus(tmp_path / "in")
    cfg = config(tmp_path / "in", tmp_path / "out", bert_model_dir)
    run_job(cfg)
    out = tmp_path / "out"
    for marker in (out / "markers").iterdir():  # the old layout: markers beside the shards
        shutil.move(marker, out / "shards" / marker.name)
    shutil.rmtree(out / "manifests")
    (out / "manifest.json").unlink()
    resumed = run_job(cfg)  # a run killed before its commit, in the old layout
    assert resumed.run.reused_shards == 2 and resumed.run.embedded_shards == 0

    write_shard(tmp_path / "in" / "part-0000.parquet", [1, 2], ["changed", "texts"])
    run_job(cfg)
    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    assert any(d.startswith("shards/part-0000.parquet") and d.endswith(".done.json") for d in deleted)
    assert any(d.startswith("shards/part-0000.parquet") and d.endswith(".parquet") for d in deleted)


@pytest.mark.skipif(importlib.util.find_spec("lancedb") is None, reason="lancedb not installed (extra: lance)")
def test_export_to_lance_writes_the_current_version(bert_model_dir, tmp_path, capsys):
    import lancedb

    write_rich_corpus(tmp_path / "in")
    run_job(config(tmp_path / "in", tmp_path / "out", bert_model_dir, keep_columns=("lang",)))
    code = main(["export", str(tmp_path / "out"), "--to", "lance", str(tmp_path / "db"), "--table", "docs"])
    assert code == 0, capsys.readouterr().err
    assert "5 rows" in capsys.readouterr().out
    table = lancedb.connect(str(tmp_path / "db")).open_table("docs")
    rows = table.to_arrow()
    assert sorted(rows["id"].to_pylist()) == [1, 2, 3, 10, 12]
    vector = rows["embedding"][0].values.to_numpy()
    hit = table.search(vector).limit(1).to_list()[0]
    assert hit["id"] == rows["id"][0].as_py() and "lang" in hit


def test_kept_columns_repeat_on_every_window_of_a_chunked_text(bert_model_dir, tmp_path):
    write_rich_corpus(tmp_path / "in")
    cfg = config(
        tmp_path / "in", tmp_path / "out", bert_model_dir, keep_columns=("lang",), long_text="chunk", max_length=16
    )
    manifest = run_job(cfg)
    shard = next(s for s in manifest.shards if s.source.relpath == "part-0000.parquet")
    table = pq.read_table(tmp_path / "out" / shard.files[0].path)
    assert table.num_rows > 3  # long texts became several windows
    by_id = {}
    for row in table.select(["id", "window", "lang"]).to_pylist():
        by_id.setdefault(row["id"], set()).add(row["lang"])
    assert by_id == {1: {"de"}, 2: {"fr"}, 3: {"ja"}}


def test_a_row_reusing_refresh_keeps_the_kept_columns_and_the_metadata(bert_model_dir, tmp_path):
    write_rich_corpus(tmp_path / "in")
    cfg = config(tmp_path / "in", tmp_path / "out", bert_model_dir, keep_columns=("lang",))
    run_job(cfg)
    before = pq.read_table(tmp_path / "in" / "part-0000.parquet")["text"].to_pylist()
    table = pa.table({"id": [1, 2, 4], "text": [*before[:2], "a new row"], "lang": ["de", "fr", "it"]})
    pq.write_table(table, tmp_path / "in" / "part-0000.parquet")  # two rows as before, one new
    manifest = run_job(cfg)
    shard = next(s for s in manifest.shards if s.source.relpath == "part-0000.parquet")
    written = pq.read_table(tmp_path / "out" / shard.files[0].path)
    assert written["lang"].to_pylist() == ["de", "fr", "it"]
    assert b"e5ray.space" in written.schema.metadata
    assert manifest.run.reuse["rows_reused"] >= 2
