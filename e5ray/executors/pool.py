"""The actor pool's size and the grouping of work units into tasks: plain Python, no Ray.

Invariants: an actor always fits on a node (its CPUs are at most the smallest node's, or
the smallest node type's); a GPU actor's share of a GPU comes from the config
(`ComputeConfig.actor_gpus`); `--max-actors` wins over everything the cluster reports; a
cluster that can grow (its launcher config, `e5ray.executors.capacity`) is sized for its largest,
since the pending actors are what make the autoscaler add nodes. Groups are handed out
largest first, so a run does not end on one long unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from e5ray.config import ComputeConfig
from e5ray.corpus.units import group_small
from e5ray.errors import DeviceUnavailableError, UsageError
from e5ray.executors.capacity import DeclaredCluster, declared_actors
from e5ray.worker.task import ShardTask

MAX_THREADS_PER_ACTOR = 8  # beyond this, one ORT session scales worse than two actors


@dataclass(frozen=True)
class PoolShape:
    min_actors: int
    max_actors: int
    num_cpus: float
    num_gpus: float
    threads: int


def pool_shape(
    compute: ComputeConfig, nodes: list[dict[str, Any]], cluster: DeclaredCluster | None = None
) -> PoolShape:
    """Size the actor pool from the config and the resources the cluster reports.

    CPU: each actor takes `threads` CPUs and runs its ONNX session on exactly that many
    threads (no oversubscription); default threads = the smallest node's CPUs, capped at
    MAX_THREADS_PER_ACTOR, so an actor always fits on a node. GPU: `actor_gpus` per actor
    (three actors per GPU by default, so that some tokenise while another runs the GPU), each
    with its share of the node's CPUs, at most 4, for reading and tokenising.
    `max_actors` is the declared capacity: it is honoured even when the nodes alive now
    fit fewer actors (an autoscaling cluster starts more for the pending ones). Without it,
    the pool is what the cluster fits at its largest, from its launcher config
    (`cluster`, `e5ray.executors.capacity`), or else what the live `nodes` (as `ray.nodes()` lists
    them, alive) fit.
    """
    cpus_per_node = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
    declared = compute.max_actors
    if compute.device == "gpu":
        gpus = compute.actor_gpus
        total_gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        fits = max(int(total_gpus / gpus + 1e-9), declared_actors(cluster, "gpu", 0, gpus) if cluster else 0)
        if fits == 0 and declared is None:
            raise DeviceUnavailableError(
                f"--device gpu: the cluster reports {total_gpus} GPUs, {gpus} needed per actor; "
                "add GPU workers (cluster.yaml: gpu_worker), give --max-actors on an autoscaling cluster, "
                "or use --device cpu"
            )
        max_actors = declared or fits
        # A GPU actor reads and tokenises on the CPU: give it its share of its node's CPUs,
        # at most 4 (on an H200 with e5-large, the tokeniser took 23% of the wall time of a
        # 523k tokens/s run, at about 420k tokens/s per thread).
        gpu_nodes = [
            (n["Resources"].get("CPU", 0), n["Resources"]["GPU"]) for n in nodes if n["Resources"].get("GPU", 0) >= 1
        ]
        gpu_nodes = gpu_nodes or [(t.cpus, t.gpus) for t in (cluster.types if cluster else ()) if t.gpus >= 1]
        per_actor = [int(cpus * gpus // node_gpus) for cpus, node_gpus in gpu_nodes]
        threads = compute.threads_per_actor or max(1, min(4, min(per_actor, default=1)))
        return PoolShape(min(compute.min_actors, max_actors), max_actors, threads, gpus, threads)
    if not cpus_per_node and cluster:  # workers not up yet: size them from the config
        cpus_per_node = [t.cpus for t in cluster.types if t.cpus >= 1 and t.max_workers > 0]
    if not cpus_per_node:
        if declared is None:
            raise UsageError(
                "the Ray cluster reports no CPUs; on an autoscaling cluster whose workers are not up yet, "
                "give --max-actors (and --threads-per-actor, the CPUs of one actor)"
            )
        threads = compute.threads_per_actor or 1
        return PoolShape(min(compute.min_actors, declared), declared, threads, 0, threads)
    threads = compute.threads_per_actor or min(min(cpus_per_node), MAX_THREADS_PER_ACTOR)
    if threads > max(cpus_per_node) and declared is None:
        raise UsageError(f"--threads-per-actor {threads}: no node has that many CPUs (largest: {max(cpus_per_node)})")
    live = sum(c // threads for c in cpus_per_node)
    max_actors = declared or max(1, live, declared_actors(cluster, "cpu", threads, 0) if cluster else 0)
    return PoolShape(min(compute.min_actors, max_actors), max_actors, threads, 0, threads)


def group_tasks(tasks: list[ShardTask], target_tokens: int) -> list[list[ShardTask]]:
    """Tasks packed into groups of about `target_tokens` (a big unit alone), largest group first."""
    groups = [[tasks[i] for i in g] for g in group_small([t.weight or 1 for t in tasks], target_tokens)]
    return sorted(groups, key=lambda g: -sum(t.weight or 1 for t in g))
