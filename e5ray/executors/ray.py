"""The Ray executor: work units through a Ray Data actor pool of E5Embedders.

The dataset holds one small row per *group* of units (`e5ray.units`: a big file's
ranges are a group each, small files are packed together up to the unit target), so a
corpus of many tiny files costs one Ray task per group, not per file. Each actor (model
loaded once) streams each unit of its group in chunks, writes the unit's output and
completion marker, and returns one manifest entry per unit. This gives 1:1 lineage
without a shuffle, memory bounded by chunk size x actors (not by the corpus), and
exactly-once output per unit even when an actor dies: a retried task rewrites the same
deterministic outputs atomically. There are no separate read or write tasks, so the
pool may use every CPU without starving Ray Data.

The pool starts at its full size (no ramp-up from one actor), takes one task per actor
at a time (a small unit never queues behind a big one on a busy actor), and gets the
largest groups first, so the run does not end on one long unit. Its size comes from
`--max-actors` when given, which may exceed what the live nodes fit: on an autoscaling
cluster the pending actors are what asks the autoscaler for nodes.

Only this module and `jobs/` import ray (tests/test_imports.py holds us to it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from e5ray.config import ComputeConfig
from e5ray.errors import DeviceUnavailableError, UsageError
from e5ray.shards import ShardTask
from e5ray.units import group_small
from e5ray.worker import EmbeddingWorker, ShardResult, WorkerSpec, result_from_dict

log = logging.getLogger("e5ray")
MAX_THREADS_PER_ACTOR = 8  # beyond this, one ORT session scales worse than two actors


@dataclass(frozen=True)
class PoolShape:
    min_actors: int
    max_actors: int
    num_cpus: float
    num_gpus: float
    threads: int


def ensure_ray() -> None:
    """Join the cluster named by RAY_ADDRESS or the running job; else start a local Ray."""
    if ray.is_initialized():
        return
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=logging.WARNING)
    else:
        # A local single-node run: no dashboard (a second to start, memory held, nothing to serve).
        ray.init(include_dashboard=False, log_to_driver=True, logging_level=logging.WARNING)


def pool_shape(compute: ComputeConfig, nodes: list[dict[str, Any]] | None = None) -> PoolShape:
    """Size the actor pool from the config and the resources the cluster reports.

    CPU: each actor takes `threads` CPUs and runs its ONNX session on exactly that many
    threads (no oversubscription); default threads = the smallest node's CPUs, capped at
    MAX_THREADS_PER_ACTOR, so an actor always fits on a node. GPU: one actor per GPU
    (or per `gpus_per_actor`), with up to 4 CPUs for reading and tokenising.
    `max_actors` is the declared capacity: it is honoured even when the nodes alive now
    fit fewer actors (an autoscaling cluster starts more for the pending ones); without
    it the pool is what the live nodes fit.
    """
    if nodes is None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus_per_node = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
    declared = compute.max_actors
    if compute.device == "gpu":
        total_gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        if total_gpus < compute.gpus_per_actor and declared is None:
            raise DeviceUnavailableError(
                f"--device gpu: the cluster reports {total_gpus} GPUs, {compute.gpus_per_actor} needed per actor; "
                "add GPU workers (cluster.yaml: gpu_worker), give --max-actors on an autoscaling cluster, "
                "or use --device cpu"
            )
        max_actors = declared or int(total_gpus // compute.gpus_per_actor)
        # A GPU actor reads and tokenises on the CPU: give it a share of its node's CPUs,
        # at most 4 (on an H200, e5-large, tokenising took 0.55 s of a 3.13 s run on 16 cores).
        per_gpu = [
            int(n["Resources"].get("CPU", 0) // n["Resources"]["GPU"])
            for n in nodes
            if n["Resources"].get("GPU", 0) >= 1
        ]
        threads = compute.threads_per_actor or max(1, min(4, min(per_gpu, default=1)))
        return PoolShape(min(compute.min_actors, max_actors), max_actors, threads, compute.gpus_per_actor, threads)
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
    max_actors = declared or max(1, sum(c // threads for c in cpus_per_node))
    return PoolShape(min(compute.min_actors, max_actors), max_actors, threads, 0, threads)


def group_tasks(tasks: list[ShardTask], target_tokens: int) -> list[list[ShardTask]]:
    """Tasks packed into groups of about `target_tokens` (a big unit alone), largest group first."""
    groups = [[tasks[i] for i in g] for g in group_small([t.weight or 1 for t in tasks], target_tokens)]
    return sorted(groups, key=lambda g: -sum(t.weight or 1 for t in g))


class ShardEmbedActor:
    """Ray Data's callable class around one EmbeddingWorker; tasks and results travel as JSON."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        # The tokenizer's thread pool would otherwise size itself to the whole node and
        # compete with the other actors there; an actor owns just its reserved CPUs.
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))
        self.worker = EmbeddingWorker(spec, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.worker.embed(ShardTask.from_dict(task)) for blob in batch["tasks"] for task in json.loads(blob)]
        return {"entry": np.array([json.dumps(r.to_dict()) for r in results], dtype=object)}


def run_on_ray(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed `tasks` on the Ray cluster; yields results as units finish."""
    if not tasks:
        return
    ensure_ray()
    groups = group_tasks(tasks, compute.unit_tokens)
    shape = pool_shape(compute)
    size = max(1, min(shape.max_actors, len(groups)))
    log.info(
        "actor pool: %d actors x %s CPUs, %s GPUs, %d threads each; %d units in %d tasks",
        size,
        shape.num_cpus,
        shape.num_gpus,
        shape.threads,
        len(tasks),
        len(groups),
    )
    dataset = ray.data.from_items(
        [{"tasks": json.dumps([t.to_dict() for t in g])} for g in groups], override_num_blocks=len(groups)
    )
    results = dataset.map_batches(
        ShardEmbedActor,
        fn_constructor_kwargs={"spec": spec, "threads": shape.threads},
        batch_size=1,
        batch_format="numpy",
        # Starts at its full size: a pool that grows from one actor left the others' CPUs
        # idle for the first 7-9 s of a run.
        compute=ray.data.ActorPoolStrategy(min_size=size, max_size=size, max_tasks_in_flight_per_actor=1),
        num_cpus=shape.num_cpus,
        num_gpus=shape.num_gpus or None,
        # A lost actor (a killed node) is replaced and its task run again, a bounded number
        # of times; outputs are idempotent, so a retry cannot duplicate or lose rows.
        max_restarts=compute.retries,
        max_task_retries=compute.retries,
    )
    for row in results.iter_rows():
        yield result_from_dict(json.loads(row["entry"]))
