"""The batch job end to end on a real local Ray: local and S3 corpora, verify, pool sizing."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, read_output, write_corpus

from e5ray import E5Embedder
from e5ray.config import ComputeConfig, JobConfig
from e5ray.executors.ray import pool_shape
from e5ray.storage import OutputDir
from e5ray.verify import verify_output

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
            input=str(tmp_path / "in"), output=str(out), model="tiny", model_path=str(bert_model_dir)
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


def test_default_pool_fits_two_cpus(local_ray):
    shape = pool_shape(ComputeConfig())
    assert shape.max_actors == 1 and shape.num_cpus == 2 and shape.threads == 2
    nodes = [{"Alive": True, "Resources": {"CPU": 16.0}}, {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}]
    big = pool_shape(ComputeConfig(), nodes)
    assert (big.threads, big.max_actors) == (8, 4)
    gpu = pool_shape(ComputeConfig(device="gpu"), nodes)  # three actors share each GPU, 16 / 2 / 3 CPUs each
    assert (gpu.num_gpus, gpu.max_actors, gpu.num_cpus, gpu.threads) == (1 / 3, 6, 2, 2)
    whole = pool_shape(ComputeConfig(device="gpu", gpus_per_actor=1.0), nodes)
    assert (whole.num_gpus, whole.max_actors, whole.num_cpus, whole.threads) == (1.0, 2, 4, 4)
    small = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]  # e.g. g5.xlarge: 4 vCPUs share one GPU
    shared = pool_shape(ComputeConfig(device="gpu", gpus_per_actor=0.5), small)
    assert (shared.num_gpus, shared.max_actors, shared.num_cpus, shared.threads) == (0.5, 2, 2, 2)
    h200 = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}]
    one = pool_shape(ComputeConfig(device="gpu"), h200)
    assert (one.num_gpus, one.max_actors, one.num_cpus, one.threads) == (1 / 3, 3, 4, 4)
    with pytest.raises(RuntimeError, match="reports 0 GPUs"):
        pool_shape(ComputeConfig(device="gpu"), nodes[:1])
