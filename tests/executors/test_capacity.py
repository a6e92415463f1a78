"""The pool is sized for what an autoscaling cluster can grow to, from its launcher config."""

from __future__ import annotations

from pathlib import Path

import yaml

from e5ray.config import ComputeConfig
from e5ray.executors.capacity import declared_actors, declared_from_config, read_declared_cluster
from e5ray.executors.pool import pool_shape

ROOT = Path(__file__).resolve().parents[2]
HEAD_ONLY = [{"Alive": True, "Resources": {"CPU": 0.0}}]  # cluster.yaml's head, before any worker is up


def test_the_repository_cluster_config_declares_8_cpu_and_4_gpu_workers():
    cluster = read_declared_cluster(ROOT / "cluster.yaml")
    assert cluster is not None and cluster.max_workers == 12
    assert declared_actors(cluster, "cpu", threads=8, gpus_per_actor=0) == 8 * 2  # the 4-CPU GPU nodes fit none
    assert declared_actors(cluster, "gpu", threads=0, gpus_per_actor=1 / 3) == 4 * 3


def test_a_cluster_with_no_worker_up_gets_its_full_pool_from_the_config():
    cluster = read_declared_cluster(ROOT / "cluster.yaml")
    cpu = pool_shape(ComputeConfig(), HEAD_ONLY, cluster)  # the smallest node (4 CPUs) sets the threads
    assert (cpu.max_actors, cpu.threads) == (8 * 4 + 4 * 1, 4)
    gpu = pool_shape(ComputeConfig(device="gpu"), HEAD_ONLY, cluster)
    # g5.xlarge: 4 vCPUs shared by three actors
    assert (gpu.max_actors, gpu.num_gpus, gpu.threads) == (12, 1 / 3, 1)


def test_live_nodes_larger_than_the_config_still_count_and_max_actors_overrides_both():
    cluster = declared_from_config(
        {"max_workers": 1, "available_node_types": {"w": {"max_workers": 1, "resources": {"CPU": 4}}}}
    )
    live = [{"Alive": True, "Resources": {"CPU": 4.0}}] * 5
    assert pool_shape(ComputeConfig(threads_per_actor=4), live, cluster).max_actors == 5
    assert pool_shape(ComputeConfig(threads_per_actor=4, max_actors=2), live, cluster).max_actors == 2


def test_the_global_worker_cap_limits_the_node_types_and_the_largest_types_fill_it_first():
    cluster = declared_from_config(
        {
            "max_workers": 3,
            "available_node_types": {
                "small": {"max_workers": 10, "resources": {"CPU": 2}},
                "big": {"max_workers": 2, "resources": {"CPU": 8}},
            },
        }
    )
    assert cluster is not None
    assert declared_actors(cluster, "cpu", threads=2, gpus_per_actor=0) == 2 * 4 + 1 * 1


def test_no_config_or_a_broken_one_means_unknown_not_a_guess(tmp_path, monkeypatch):
    assert read_declared_cluster(tmp_path / "absent.yaml") is None
    (tmp_path / "bad.yaml").write_text("available_node_types: [unclosed")
    assert read_declared_cluster(tmp_path / "bad.yaml") is None
    (tmp_path / "list.yaml").write_text(yaml.safe_dump({"available_node_types": ["x"]}))
    assert read_declared_cluster(tmp_path / "list.yaml") is None
    monkeypatch.setenv("E5RAY_CLUSTER_CONFIG", str(ROOT / "cluster.yaml"))
    assert read_declared_cluster() is not None


def test_worker_types_whose_resources_are_not_stated_add_nothing():
    cluster = declared_from_config({"available_node_types": {"w": {"max_workers": 4, "resources": {}}}})
    assert cluster is not None and declared_actors(cluster, "cpu", threads=2, gpus_per_actor=0) == 0
