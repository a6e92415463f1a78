"""The Ray executor: shard tasks through a Ray Data actor pool of E5Embedders.

The unit of work is a whole source shard: the dataset holds one small row per shard
task, each actor (model loaded once) streams its shard in chunks, writes the output
shard and its completion marker, and returns the manifest entry. This gives 1:1
lineage without a shuffle, memory bounded by chunk size x actors (not by the corpus),
and exactly-once output per shard even when an actor dies: a retried task rewrites
the same deterministic output atomically. There are no separate read or write tasks,
so the pool may use every CPU without starving Ray Data.

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
    """Size the actor pool from the resources the cluster reports.

    CPU: each actor takes `threads` CPUs and runs its ONNX session on exactly that many
    threads (no oversubscription); default threads = the smallest node's CPUs, capped at
    MAX_THREADS_PER_ACTOR, so an actor always fits on a node. GPU: one actor per GPU
    (or per `gpus_per_actor`), with one CPU for reading and tokenising.
    """
    if nodes is None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
    cpus_per_node = [int(n["Resources"].get("CPU", 0)) for n in nodes if n["Resources"].get("CPU", 0) >= 1]
    if compute.device == "gpu":
        total_gpus = sum(n["Resources"].get("GPU", 0) for n in nodes)
        if total_gpus < compute.gpus_per_actor:
            raise DeviceUnavailableError(
                f"--device gpu: the cluster reports {total_gpus} GPUs, {compute.gpus_per_actor} needed per actor; "
                "add GPU workers (cluster.yaml: gpu_worker) or use --device cpu"
            )
        most = int(total_gpus // compute.gpus_per_actor)
        max_actors = min(compute.max_actors or most, most)
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
        raise UsageError("the Ray cluster reports no CPUs")
    threads = compute.threads_per_actor or min(min(cpus_per_node), MAX_THREADS_PER_ACTOR)
    if threads > max(cpus_per_node):
        raise UsageError(f"--threads-per-actor {threads}: no node has that many CPUs (largest: {max(cpus_per_node)})")
    most = max(1, sum(c // threads for c in cpus_per_node))
    max_actors = min(compute.max_actors or most, most)
    return PoolShape(min(compute.min_actors, max_actors), max_actors, threads, 0, threads)


class ShardEmbedActor:
    """Ray Data's callable class around one EmbeddingWorker; tasks and results travel as JSON."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        # The tokenizer's thread pool would otherwise size itself to the whole node and
        # compete with the other actors there; an actor owns just its reserved CPUs.
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))
        self.worker = EmbeddingWorker(spec, threads)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = [self.worker.embed(ShardTask.from_dict(json.loads(blob))) for blob in batch["task"]]
        return {"entry": np.array([json.dumps(r.to_dict()) for r in results], dtype=object)}


def run_on_ray(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed `tasks` on the Ray cluster; yields results as shards finish."""
    if not tasks:
        return
    ensure_ray()
    shape = pool_shape(compute)
    shape = PoolShape(
        min(shape.min_actors, len(tasks)),
        min(shape.max_actors, len(tasks)),
        shape.num_cpus,
        shape.num_gpus,
        shape.threads,
    )
    log.info(
        "actor pool: %d..%d actors x %s CPUs, %s GPUs, %d threads each",
        shape.min_actors,
        shape.max_actors,
        shape.num_cpus,
        shape.num_gpus,
        shape.threads,
    )
    # Largest shards first, so a big shard does not start last and hold up the end.
    ordered = sorted(tasks, key=lambda t: -t.source.size)
    dataset = ray.data.from_items(
        [{"task": json.dumps(t.to_dict())} for t in ordered], override_num_blocks=len(ordered)
    )
    results = dataset.map_batches(
        ShardEmbedActor,
        fn_constructor_kwargs={"spec": spec, "threads": shape.threads},
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(min_size=max(1, shape.min_actors), max_size=max(1, shape.max_actors)),
        num_cpus=shape.num_cpus,
        num_gpus=shape.num_gpus or None,
        # Ray Data replaces a lost actor and retries its shard (max_restarts and
        # max_task_retries default to -1 for actor pools); outputs are idempotent, so a
        # retry cannot duplicate or lose rows.
    )
    for row in results.iter_rows():
        yield result_from_dict(json.loads(row["entry"]))
