"""Output sinks: Parquet (the contract) and JSONL (a debug sink that proves the seam)."""

from __future__ import annotations

import json

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, read_output, write_corpus
from job_utils import config

from e5ray.errors import UsageError
from e5ray.output.sinks.base import SINKS, get_sink
from e5ray.output.sinks.jsonl import JsonlSink
from e5ray.output.sinks.parquet import ParquetSink
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

LOCAL = fsspec.filesystem("file")


def vectors(n: int, dim: int = 4) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, dim)).astype(np.float32)


@pytest.mark.parametrize("sink_class", [ParquetSink, JsonlSink])
def test_a_sink_writes_what_it_was_given_and_its_check_agrees(sink_class, tmp_path):
    sink = sink_class()
    sink.open(str(tmp_path), "part-0000-key", pa.string(), 4)
    sink.write(["a", "b"], vectors(2))
    sink.write(["c"], vectors(1))
    (file,) = sink.close()
    assert file.rows == 3 and file.local_path.startswith(str(tmp_path / ".part-0000-key."))
    assert sink_class.check(LOCAL, file.local_path, 4) == (3, [])
    rows, problems = sink_class.check(LOCAL, file.local_path, 5)
    assert problems, "a file of another dimension must be reported"
    sink.abort()  # a finished file that was not moved away (its commit failed) goes too
    assert list(tmp_path.iterdir()) == []


def test_abort_removes_an_unfinished_shard(tmp_path):
    for sink_class in (ParquetSink, JsonlSink):
        sink = sink_class()
        sink.open(str(tmp_path), "stem", pa.int64(), 4)
        sink.write([1], vectors(1))
        sink.abort()
    assert list(tmp_path.iterdir()) == []


def test_parquet_keeps_the_output_contract(tmp_path):
    sink = ParquetSink()
    sink.open(str(tmp_path), "stem", pa.int64(), 4)
    sink.write([7, 8], vectors(2), extra={"lang": ["en", "de"]})
    (file,) = sink.close()
    table = pq.read_table(file.local_path)
    assert table.schema.names == ["id", "embedding", "lang"]
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 4)
    np.testing.assert_array_equal(np.stack(table.column("embedding").to_pylist()), vectors(2))


def test_jsonl_floats_read_back_to_the_same_float32_vectors(tmp_path):
    sink = JsonlSink()
    sink.open(str(tmp_path), "stem", pa.int64(), 4)
    sink.write([1, 2], vectors(2))
    (file,) = sink.close()
    records = [json.loads(line) for line in open(file.local_path)]
    assert [r["id"] for r in records] == [1, 2]
    np.testing.assert_array_equal(np.asarray([r["embedding"] for r in records], dtype=np.float32), vectors(2))


def test_unknown_sink_lists_the_registered_ones():
    with pytest.raises(UsageError, match="unknown output format 'lance'; valid: parquet, jsonl"):
        get_sink("lance")
    assert set(SINKS) == {"parquet", "jsonl"}


def read_jsonl_output(out) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    found = {}
    for shard in manifest["shards"]:
        for file in shard["files"]:
            for line in (out / file["path"]).read_text().splitlines():
                record = json.loads(line)
                found[record["id"]] = np.asarray(record["embedding"], dtype=np.float32)
    return found


def test_a_job_with_the_jsonl_sink_writes_verifies_and_matches_parquet(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    manifest = embed_job(config(inp, out, bert_model_dir, output_format="jsonl"))
    assert manifest["output"] == {"format": "jsonl"} and manifest["totals"]["embedded"] == 20
    assert all(f["path"].endswith(".embeddings.jsonl") for s in manifest["shards"] for f in s["files"])
    output = OutputDir(str(out))
    assert verify_output(output) == []

    embed_job(config(inp, tmp_path / "parquet", bert_model_dir))
    got, want = read_jsonl_output(out), read_output(str(tmp_path / "parquet"))
    assert sorted(got, key=str) == sorted(want, key=str)
    for key, vector in want.items():
        np.testing.assert_array_equal(got[key], vector)

    # verify reads JSONL through its sink: a truncated line is a problem
    first = out / manifest["shards"][0]["files"][0]["path"]
    first.write_text(first.read_text()[:-20])
    assert any("bytes" in p or "sha256" in p for p in verify_output(output))


def test_one_version_holds_one_format(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    embed_job(config(inp, out, bert_model_dir))
    with pytest.raises(UsageError, match="holds parquet shards, this run writes jsonl"):
        embed_job(config(inp, out, bert_model_dir, output_format="jsonl"))
    v2 = embed_job(config(inp, out, bert_model_dir, output_format="jsonl", full=True))
    assert v2["output"] == {"format": "jsonl"} and v2["run"]["embedded_shards"] == 1
    assert verify_output(OutputDir(str(out))) == []
