"""Corpus discovery, fingerprints and streaming readers."""

import gzip
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import write_shard

from e5ray.corpus.sources import CorpusError, discover, format_of, read_chunks


def rows_of(shard, **kw):
    ids, texts, errors = [], [], {}
    for chunk in read_chunks(shard, **kw):
        for pos, reason in chunk.errors.items():
            errors[chunk.start + pos] = reason
        ids += chunk.ids
        texts += chunk.texts
    return ids, texts, errors


def test_formats_from_extensions():
    assert format_of("a/b.parquet") == "parquet"
    assert format_of("x.JSONL.GZ") == "jsonl"
    assert format_of("x.ndjson") == "jsonl"
    assert format_of("x.csv") is None


def test_discover_dir_glob_and_file(tmp_path):
    write_shard(tmp_path / "c" / "a.parquet", [1], ["x"])
    write_shard(tmp_path / "c" / "sub" / "b.jsonl.gz", [2], ["y"])
    (tmp_path / "c" / "_SUCCESS").write_text("")
    (tmp_path / "c" / ".hidden.jsonl").write_text("{}\n")
    (tmp_path / "c" / "notes.txt").write_text("ignored")
    shards = discover(str(tmp_path / "c"))
    assert [s.relpath for s in shards] == ["a.parquet", "sub/b.jsonl.gz"]
    assert [s.format for s in shards] == ["parquet", "jsonl"]
    assert [s.relpath for s in discover(str(tmp_path / "c" / "*.parquet"))] == ["a.parquet"]
    single = discover(str(tmp_path / "c" / "sub" / "b.jsonl.gz"))
    assert len(single) == 1 and single[0].uri.endswith("b.jsonl.gz")


def test_discover_errors_name_the_input(tmp_path):
    with pytest.raises(CorpusError, match="does not exist"):
        discover(str(tmp_path / "missing"))
    (tmp_path / "only.txt").write_text("x")
    with pytest.raises(CorpusError, match=r"found only \['only.txt'\]"):
        discover(str(tmp_path))
    with pytest.raises(CorpusError, match="valid: parquet, jsonl"):
        discover(str(tmp_path), fmt="csv")
    assert discover(str(tmp_path), fmt="jsonl")[0].relpath == "only.txt"


def test_fingerprint_follows_content(tmp_path):
    path = tmp_path / "a.jsonl"
    write_shard(path, [1], ["one"])
    before = discover(str(path))[0]
    write_shard(path, [1], ["two, longer"])
    os.utime(path, ns=(before_ns := 10**18, before_ns))
    after = discover(str(path))[0]
    assert before.fingerprint != after.fingerprint


def test_jsonl_bad_lines_become_row_errors(tmp_path):
    path = tmp_path / "bad.jsonl.gz"
    lines = [
        json.dumps({"id": 1, "text": "fine"}),
        "{not json",
        "[1, 2]",
        "",
        json.dumps({"id": 2}),
        json.dumps({"id": 3, "text": "also fine"}),
    ]
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    ids, texts, errors = rows_of(discover(str(path))[0], chunk_rows=2)
    assert ids == [1, None, None, 2, 3]
    assert texts[0] == "fine" and texts[4] == "also fine"
    assert errors[1].startswith("malformed JSON line") and "not an object" in errors[2]
    assert errors[3] == "no 'text' field"


def test_missing_columns_are_a_clear_error(tmp_path):
    write_shard(tmp_path / "a.parquet", [1], ["x"])
    (tmp_path / "b.jsonl").write_text(json.dumps({"doc_id": 1, "body": "x"}) + "\n")
    with pytest.raises(CorpusError, match=r"no column \['body'\].*columns: \['id', 'text'\]"):
        rows_of(discover(str(tmp_path / "a.parquet"))[0], text_column="body")
    with pytest.raises(CorpusError, match=r"fields seen: \['body', 'doc_id'\]"):
        rows_of(discover(str(tmp_path / "b.jsonl"))[0])


def test_parquet_streams_in_chunks_and_keeps_id_type(tmp_path):
    path = tmp_path / "s.parquet"
    pq.write_table(pa.table({"id": pa.array([f"d{i}" for i in range(10)]), "text": ["t"] * 10}), path, row_group_size=4)
    chunks = list(read_chunks(discover(str(path))[0], chunk_rows=3))
    assert [c.start for c in chunks] == [0, 3, 6, 9]
    assert chunks[0].id_type == pa.string()


def test_s3_prefix_discovery_uses_etags(s3_server, s3_bucket, s3_env):
    fs = s3_server.filesystem()
    write_shard(f"{s3_bucket}/corpus/a.parquet", [1, 2], ["x", "y"], fs)
    write_shard(f"{s3_bucket}/corpus/b.jsonl", [3], ["z"], fs)
    shards = discover(f"s3://{s3_bucket}/corpus")
    assert [s.uri for s in shards] == [f"s3://{s3_bucket}/corpus/a.parquet", f"s3://{s3_bucket}/corpus/b.jsonl"]
    assert all(s.stamp.startswith("etag:") for s in shards)
    ids, _, _ = rows_of(shards[0])
    assert ids == [1, 2]
