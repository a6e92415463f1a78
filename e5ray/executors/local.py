"""The local executor: every unit in this process, with one worker.

For tests, small corpora and machines without Ray: no cluster, no serialisation. Units
are grouped as the Ray executor groups them into tasks (`e5ray.executors.pool.group_tasks`), so
the small units of a group share ONNX batches here too (`e5ray.worker.shared_batches`); each
result is yielded as soon as its unit is committed, so the job sees progress per unit
and a run stopped midway leaves every finished unit's marker for the resume.
"""

from __future__ import annotations

from collections.abc import Iterator

from e5ray.config import ComputeConfig
from e5ray.executors.pool import group_tasks
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, ShardResult, WorkerSpec


def run_local(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed group after group in this process with one embedder (no Ray)."""
    if not tasks:
        return
    worker = EmbeddingWorker(spec, compute.threads_per_actor)
    for group in group_tasks(tasks, compute.unit_tokens):
        yield from worker.embed_each(group)
