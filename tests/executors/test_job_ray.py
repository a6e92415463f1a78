"""The batch job end to end on a real local Ray: local and S3 corpora, verify, pool sizing."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, read_output, write_corpus

from e5ray import E5Embedder
from e5ray.config import JobConfig
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

ray = pytest.importorskip("ray")


def assert_matches_embedder(vectors, texts, model_dir):
    embedder = E5Embedder("tiny", model_path=model_dir, threads=1)
    ids = sorted(texts)
    want = embedder.embed_passages([texts[i] for i in ids])
    got = np.stack([vectors[i] for i in ids])
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_local_dir_to_local_dir(local_ray, bert_model_dir, tmp_path):
    texts = write_corpus(tmp_path / "in", shards=3, rows=30)
    out = tmp_path / "out"
    manifest = embed_job(
        JobConfig.from_options(
            input=str(tmp_path / "in"), output=str(out), model="tiny", model_path=str(bert_model_dir), executor="ray"
        )
    )
    vectors = read_output(str(out))
    assert set(vectors) == set(texts)  # every id exactly once (read_output asserts no repeats)
    assert_matches_embedder(vectors, texts, bert_model_dir)
    assert manifest["totals"]["input_rows"] == manifest["totals"]["embedded"] == 90
    assert manifest["space"]["pooling"] == "mean" and manifest["space"]["normalized"] is True
    assert manifest["run"]["executor"] == "ray" and manifest["run"]["tokens_per_s"] > 0
    for shard in manifest["shards"]:
        schema = pq.read_schema(out / shard["files"][0]["path"])
        assert str(schema.field("embedding").type) == f"fixed_size_list<element: float>[{manifest['space']['dim']}]"
        assert schema.field("id").type == "int64"
    assert verify_output(OutputDir(str(out))) == []


def test_s3_to_s3(local_ray, s3_server, s3_bucket, s3_env, bert_model_dir):
    fs = s3_server.filesystem()
    texts = write_corpus(f"{s3_bucket}/corpus", shards=3, rows=25, fs=fs)
    output = f"s3://{s3_bucket}/embeddings"
    manifest = embed_job(
        JobConfig.from_options(
            input=f"s3://{s3_bucket}/corpus/",
            output=output,
            model="tiny",
            model_path=str(bert_model_dir),
            executor="ray",
            s3_endpoint=s3_server.endpoint_url,
        )
    )
    vectors = read_output(output, fs)
    assert set(vectors) == set(texts)
    assert_matches_embedder(vectors, texts, bert_model_dir)
    assert all(s["source"]["stamp"].startswith("etag:") for s in manifest["shards"])
    assert verify_output(OutputDir(output)) == []

    # verify catches a tampered shard and a missing one
    first, second = (s["files"][0]["path"] for s in manifest["shards"][:2])
    data = bytearray(fs.cat_file(f"{s3_bucket}/embeddings/{first}"))
    data[len(data) // 2] ^= 0xFF
    fs.pipe_file(f"{s3_bucket}/embeddings/{first}", bytes(data))
    fs.rm_file(f"{s3_bucket}/embeddings/{second}")
    problems = verify_output(OutputDir(output))
    assert any(first in p and "sha256" in p for p in problems)
    assert any(second in p and "missing" in p for p in problems)
