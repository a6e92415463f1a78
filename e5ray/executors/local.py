"""The local executor: every shard in this process, one after the other, with one worker.

For tests, small corpora and machines without Ray: no cluster, no serialisation.
"""

from __future__ import annotations

from collections.abc import Iterator

from e5ray.config import ComputeConfig
from e5ray.shards import ShardTask
from e5ray.worker import EmbeddingWorker, ShardResult, WorkerSpec


def run_local(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
    """Embed shard after shard in this process with one embedder (no Ray)."""
    if not tasks:
        return
    worker = EmbeddingWorker(spec, compute.threads_per_actor)
    for task in tasks:
        yield worker.embed(task)
