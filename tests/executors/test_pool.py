"""The actor pool's size from the config and the nodes, without a cluster (e5ray.executors.pool)."""

from __future__ import annotations

import pytest

from e5ray.config import ComputeConfig
from e5ray.errors import UsageError
from e5ray.executors.pool import group_tasks, pool_shape
from e5ray.worker.task import ShardTask

TWO_CPUS = [{"Alive": True, "Resources": {"CPU": 2.0}}]
CLUSTER = [{"Alive": True, "Resources": {"CPU": 16.0}}, {"Alive": True, "Resources": {"CPU": 16.0, "GPU": 2.0}}]


def test_the_default_pool_on_a_two_cpu_machine_is_one_actor_on_both_cpus():
    shape = pool_shape(ComputeConfig(), TWO_CPUS)
    assert (shape.max_actors, shape.num_cpus, shape.threads) == (1, 2, 2)


def test_cpu_actors_take_at_most_eight_threads_and_fill_every_node():
    big = pool_shape(ComputeConfig(), CLUSTER)
    assert (big.threads, big.max_actors) == (8, 4)


def test_three_gpu_actors_share_each_gpu_with_their_share_of_its_node_cpus_unless_told():
    gpu = pool_shape(ComputeConfig(device="gpu"), CLUSTER)  # 16 CPUs / 2 GPUs / 3 actors each
    assert (gpu.num_gpus, gpu.max_actors, gpu.num_cpus, gpu.threads) == (1 / 3, 6, 2, 2)
    whole = pool_shape(ComputeConfig(device="gpu", gpus_per_actor=1.0), CLUSTER)
    assert (whole.num_gpus, whole.max_actors, whole.num_cpus, whole.threads) == (1.0, 2, 4, 4)
    small = [{"Alive": True, "Resources": {"CPU": 4.0, "GPU": 1.0}}]  # e.g. g5.xlarge: 4 vCPUs share one GPU
    shared = pool_shape(ComputeConfig(device="gpu", gpus_per_actor=0.5), small)
    assert (shared.num_gpus, shared.max_actors, shared.num_cpus, shared.threads) == (0.5, 2, 2, 2)
    h200 = [{"Alive": True, "Resources": {"CPU": 16.0, "GPU": 1.0}}]
    one = pool_shape(ComputeConfig(device="gpu"), h200)
    assert (one.num_gpus, one.max_actors, one.num_cpus, one.threads) == (1 / 3, 3, 4, 4)


def test_a_gpu_run_on_a_cluster_without_gpus_fails_with_one_line_naming_the_count():
    with pytest.raises(RuntimeError, match="reports 0 GPUs"):
        pool_shape(ComputeConfig(device="gpu"), CLUSTER[:1])


def test_max_actors_is_honoured_even_when_no_node_reports_cpus_yet():
    head_only = [{"Alive": True, "Resources": {"CPU": 0.0}}]
    with pytest.raises(UsageError, match="reports no CPUs"):
        pool_shape(ComputeConfig(), head_only)
    shape = pool_shape(ComputeConfig(max_actors=5, threads_per_actor=4), head_only)
    assert (shape.max_actors, shape.threads) == (5, 4)


def test_small_units_are_packed_into_tasks_and_the_largest_task_comes_first():
    tasks = [ShardTask.__new__(ShardTask) for _ in range(5)]
    weights = [10, 10, 1000, 10, 10]
    for task, weight in zip(tasks, weights, strict=True):
        object.__setattr__(task, "weight", weight)
    groups = group_tasks(tasks, target_tokens=100)
    assert sum(len(g) for g in groups) == 5 and groups[0] == [tasks[2]]
    assert sorted(len(g) for g in groups) == [1, 4]
