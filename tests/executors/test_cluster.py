"""A simulated 3-node Ray cluster (ray.cluster_utils.Cluster, fake CPU counts, its own
temp dir, a node-local model cache each): actors on every node, the model staged once
per node, a big file split into units spread over the nodes, every id exactly once."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard

from e5ray.config import ComputeConfig, JobConfig
from e5ray.executors.base import planned_pool_size
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

NODES = 3


@pytest.fixture
def cluster(s3_server, s3_env, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    # Ray's unix socket paths limit the temp dir's length: a short one of our own, so the
    # cluster never joins (or is joined by) another Ray on this machine.
    temp = tempfile.mkdtemp(prefix="e5c-", dir="/tmp")
    # Cluster also records its address under $RAY_TMPDIR/ray: keep that file in our dir too.
    os.makedirs(f"{temp}/ray")
    monkeypatch.setenv("RAY_TMPDIR", temp)
    caches = [tmp_path / f"node-{i}-cache" for i in range(NODES)]
    node_args = [
        {"num_cpus": 1, "env_vars": {"E5RAY_CACHE": str(caches[i]), **s3_env}, "node_ip_address": "127.0.0.1"}
        for i in range(NODES)
    ]
    c = Cluster(initialize_head=True, head_node_args={**node_args[0], "temp_dir": temp, "include_dashboard": False})
    for args in node_args[1:]:
        c.add_node(**args)
    c.wait_for_nodes()
    # ray.init would turn 127.0.0.1 into this machine's routable address, where nothing listens.
    monkeypatch.setattr("ray._private.services.resolve_ip_for_localhost", lambda host: host)
    ray.init(address=c.address, logging_level="WARNING", _node_ip_address="127.0.0.1")
    try:
        yield caches
    finally:
        ray.shutdown()
        c.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def staged_models(cache: Path) -> list[Path]:
    return [p.parent for p in cache.rglob("*.onnx")] if cache.exists() else []


@pytest.mark.slow
def test_a_big_file_is_split_over_every_node_and_each_id_lands_once(cluster, s3_server, s3_bucket, bert_model_dir):
    fs = s3_server.filesystem()
    fs.put(str(bert_model_dir), f"{s3_bucket}/model", recursive=True)
    big = pa.table({"id": list(range(600)), "text": make_texts(600, 3)})
    sink = pa.BufferOutputStream()
    pq.write_table(big, sink, row_group_size=50)
    fs.pipe_file(f"{s3_bucket}/corpus/big.parquet", sink.getvalue().to_pybytes())
    for s in range(3):
        write_shard(
            f"{s3_bucket}/corpus/small-{s}.parquet", [9000 + 10 * s + i for i in range(4)], make_texts(4, s), fs
        )
    output = f"s3://{s3_bucket}/out"
    config = JobConfig.from_options(
        input=f"s3://{s3_bucket}/corpus",
        output=output,
        model="tiny",
        model_path=f"s3://{s3_bucket}/model",
        executor="ray",
        cache_dir=None,
        threads_per_actor=1,
        unit_rows=100,
        unit_tokens=10_000,  # low enough that this small file's footer is read
        max_actors=NODES,
        s3_endpoint=s3_server.endpoint_url,
    )
    # the units are planned for the pool the executor starts: one 1-CPU actor per node
    assert planned_pool_size(ComputeConfig(executor="ray", threads_per_actor=1)) == NODES
    manifest = embed_job(config)
    big_units = [e for e in manifest["shards"] if e["source"]["relpath"] == "big.parquet"]
    assert len(big_units) == 6 and all(e["unit"]["kind"] == "rows" for e in big_units)
    assert sorted(read_output(output, fs)) == sorted(
        [*range(600), *(9000 + 10 * s + i for s in range(3) for i in range(4))]
    )
    assert verify_output(OutputDir(output)) == []
    # an actor ran on every node: each node-local cache holds the model, staged once there
    for cache in cluster:
        assert len(staged_models(cache)) == 1, f"{cache}: {staged_models(cache)}"
    assert os.environ.get("E5RAY_CACHE") not in {str(c) for c in cluster}
