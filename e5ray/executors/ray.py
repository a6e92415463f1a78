"""The Ray executor: work units through a Ray Data actor pool of E5Embedders.

The dataset holds one small row per *group* of units (`e5ray.corpus.units`: a big file's
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

The units were sized for this pool (`planned_pool_size`, called while the driver plans;
`e5ray.corpus.units.balanced_target`), and small units are grouped up to the same balanced size,
so every actor gets several tasks and the last wave is short.

Where the pool runs (`e5ray.executors.ray_start`): the cluster in RAY_ADDRESS, or a fresh
local Ray of our own. Actors count rows, tokens and rejects in Ray metrics for the
dashboard and Prometheus.

A cluster that stops answering while the driver needs it (its head's GCS frozen, or every
node that could host an actor lost) ends the run with one line and exit code 7 within
$E5RAY_RAY_LOST_TIMEOUT (`e5ray.executors.watchdog`; `ray_exit.abandon` ends the process
without waiting on Ray's own shutdown). Every call the driver makes to the GCS here is bounded
the same way.

Only this module, `ray_start`, `ray_auth`, `ray_exit` and `jobs/` import ray (the import-linter contract and tests/test_imports.py hold us to it).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import numpy as np
import ray

from e5ray import timeline
from e5ray.config import ComputeConfig
from e5ray.corpus.units import balanced_tokens
from e5ray.errors import RayClusterLost, UsageError
from e5ray.executors.capacity import read_declared_cluster
from e5ray.executors.pool import PoolShape, group_tasks, pool_shape
from e5ray.executors.ray_exit import abandon
from e5ray.executors.ray_start import _local_ray, auth_setting, ensure_ray
from e5ray.executors.watchdog import (
    ClusterWatch,
    Watchdog,
    call_within,
    can_host,
    lost_timeout_s,
    no_node_timeout_s,
)
from e5ray.output.manifest import ShardEntry
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, ShardResult, WorkerSpec, result_from_dict

__all__ = ["auth_setting", "ensure_ray", "map_on_ray", "planned_pool_size", "run_on_ray"]
log = logging.getLogger("e5ray")
T = TypeVar("T")
R = TypeVar("R")


class ShardMetrics:
    """Ray metrics (dashboard, Prometheus) for the rows, tokens and rejects of finished shards."""

    def __init__(self, device: str) -> None:
        from ray.util.metrics import Counter

        tags = ("device",)
        self.rows = Counter("e5ray_rows_embedded", "rows embedded", tag_keys=tags)
        self.tokens = Counter("e5ray_tokens_embedded", "real (unpadded) tokens embedded", tag_keys=tags)
        self.rejects = Counter("e5ray_rows_rejected", "rows rejected, with a reason, in rejects files", tag_keys=tags)
        self.shards = Counter("e5ray_shards_finished", "work units embedded and committed", tag_keys=tags)
        self.tags = {"device": device}

    def record(self, result: ShardResult) -> None:
        if not isinstance(result, ShardEntry):  # a failed shard: reported to the driver, not counted
            return
        # Counter.inc refuses 0: count only what happened.
        for counter, value in (
            (self.rows, result.rows),
            (self.tokens, result.tokens),
            (self.rejects, result.rejected),
            (self.shards, 1),
        ):
            if value:
                counter.inc(value, tags=self.tags)


class ShardEmbedActor:
    """Ray Data's callable class around one EmbeddingWorker; tasks and results travel as JSON."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        # The tokenizer's thread pool would otherwise size itself to the whole node and
        # compete with the other actors there; an actor owns just its reserved CPUs.
        os.environ.setdefault("RAYON_NUM_THREADS", str(max(1, threads)))
        self.worker = EmbeddingWorker(spec, threads)
        self.metrics = ShardMetrics(spec.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tasks = [ShardTask.from_dict(task) for blob in batch["tasks"] for task in json.loads(blob)]
        results = self.worker.embed_many(tasks)
        for result in results:
            self.metrics.record(result)
        return {"entry": np.array([json.dumps(r.to_dict()) for r in results], dtype=object)}


def planned_pool_size(compute: ComputeConfig) -> int:
    """The actors `run_on_ray` will size its pool for, known while the driver plans (units are
    sized for it): `--max-actors`; else what the cluster fits (joined first when RAY_ADDRESS
    names one); else what a local Ray on this machine's CPUs would fit. 1 when the pool
    cannot be sized here: `run_on_ray` reports why."""
    if compute.max_actors is not None:
        return compute.max_actors
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        ensure_ray()
        nodes = _alive_nodes()
    else:
        nodes = [{"Resources": {"CPU": float(len(os.sched_getaffinity(0)))}, "Alive": True}]
    try:
        return pool_shape(compute, nodes, read_declared_cluster()).max_actors
    except UsageError:
        return 1


def run_on_ray(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed `tasks` on the Ray cluster; yields results as units finish."""
    if not tasks:
        return
    ensure_ray()
    nodes = _alive_nodes()
    shape = pool_shape(compute, nodes, read_declared_cluster() if compute.max_actors is None else None)
    # Small units grouped no bigger than the split units: a corpus of small files gives every actor work too.
    group_target = balanced_tokens(compute.unit_tokens, sum(t.weight or 1 for t in tasks), shape.max_actors)
    groups = group_tasks(tasks, group_target)
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
    with warnings.catch_warnings():
        # Ray 2.60 has no named parameter for an actor's restarts and task retries (its
        # issue 65227); the remote args it calls deprecated are the only way to bound them.
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        results = _map_batches(dataset, spec, shape, size, compute.retries)
    timeline.mark("pool_requested")
    watchdog = _watch(shape)
    try:
        for row in results.iter_rows():
            if watchdog is not None:
                watchdog.watch.unit_finished()
            yield result_from_dict(json.loads(row["entry"]))
    except LOST_POOL as exc:
        raise _pool_lost(exc) from None
    except KeyboardInterrupt:
        # Stop the actors before the driver removes their temporary files: a local Ray
        # we started goes down with its workers (a cluster's actors end with this driver).
        if _local_ray and ray.is_initialized():
            ray.shutdown()
        raise
    finally:
        if watchdog is not None:
            watchdog.stop()


# What Ray Data raises from `iter_rows` when the pool's actors or their nodes are gone for good
# (their retries spent, or a task that "may or may not have run" on an actor that went away).
LOST_POOL = (
    ray.exceptions.ActorDiedError,
    ray.exceptions.ActorUnavailableError,
    ray.exceptions.NodeDiedError,
    ray.exceptions.OwnerDiedError,
)


def _pool_lost(exc: BaseException) -> RayClusterLost:
    reason = (str(exc).strip().splitlines() or [""])[0]
    return RayClusterLost(
        f"the Ray cluster at {_address()} lost the pool's actors: {type(exc).__name__}: {reason}; nothing was "
        "committed (finished units are kept and reused by the next run): check the cluster's nodes, then run again"
    )


def _address() -> str:
    """The cluster, as the error line names it: RAY_ADDRESS, or the GCS of our local Ray."""
    if os.environ.get("RAY_ADDRESS"):
        return f"{os.environ['RAY_ADDRESS']} (RAY_ADDRESS)"
    with contextlib.suppress(Exception):
        return f"{ray.get_runtime_context().gcs_address} (the local Ray of this run)"
    return "the local Ray of this run"


def _lost(address: str, reason: str) -> None:
    """One line, exit code 7, and the process ends here (`ray_exit.abandon`)."""
    error = RayClusterLost(
        f"the Ray cluster at {address} stopped answering: {reason}; nothing was committed (finished "
        f"units are kept and reused by the next run): check the cluster, then run again"
    )
    abandon(f"e5ray: error: {type(error).__name__}: {error}", error.exit_code, _local_ray[0] if _local_ray else None)


def _alive_nodes() -> list[dict[str, Any]]:
    """`ray.nodes()` that are alive, asked in a daemon thread: a GCS that does not answer within
    $E5RAY_RAY_LOST_TIMEOUT ends the run (a frozen one would block the call for good)."""
    timeout = lost_timeout_s()
    done, answer = call_within(ray.nodes, timeout, "e5ray-ray-nodes")
    if not done:
        _lost(_address(), f"its head (GCS) did not answer a call for {timeout:g} s")
    if isinstance(answer, Exception):
        raise answer
    assert answer is not None
    return [n for n in answer if n.get("Alive")]


def _watch(shape: PoolShape) -> Watchdog | None:
    """The watchdog beside the results loop (`e5ray.executors.watchdog`); None when $E5RAY_RAY_LOST_TIMEOUT is 0."""
    timeout = lost_timeout_s()
    if not timeout:
        return None
    address = _address()
    watch = ClusterWatch(timeout, can_grow=read_declared_cluster() is not None, no_host_s=no_node_timeout_s())
    return Watchdog(
        watch,
        lambda: can_host(ray.nodes(), shape.num_cpus, shape.num_gpus),
        lambda reason: _lost(address, reason),
    ).start()


def _map_batches(dataset: Any, spec: WorkerSpec, shape: PoolShape, size: int, retries: int) -> Any:
    return dataset.map_batches(
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
        max_restarts=retries,
        max_task_retries=retries,
    )


def map_on_ray(fn: Callable[[T], R], items: list[T], per_task: int = 16) -> list[R]:
    """`[fn(x) for x in items]` as Ray tasks of `per_task` items each, spread over the
    cluster (one CPU each), in input order. For I/O-heavy checks whose reads should not
    all pass through the driver (`e5ray verify --on-ray`)."""
    if not items:
        return []
    ensure_ray()

    @ray.remote(num_cpus=1, max_retries=3)
    def run(batch: list[T]) -> list[R]:
        return [fn(x) for x in batch]

    refs = [
        run.options(scheduling_strategy="SPREAD").remote(items[i : i + per_task])
        for i in range(0, len(items), per_task)
    ]
    return [r for part in ray.get(refs) for r in part]
