"""Helpers shared by the in-process job tests (refresh, space guard, versions, gc, rejects)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus_utils import embed_job, make_texts, write_shard

from e5ray.config import ComputeConfig, JobConfig
from e5ray.errors import ConcurrentCommitError
from e5ray.executors.local import run_local
from e5ray.worker.task import ShardTask
from e5ray.worker.worker import EmbeddingWorker, ShardResult, WorkerSpec


class Killed(BaseException):
    """Stands in for a SIGKILL: not an Exception, so nothing on the way catches it."""


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    kw.setdefault("model", "tiny")
    kw.setdefault("executor", "local")
    return JobConfig.from_options(input=str(inp), output=str(out), model_path=str(model_dir), **kw)


def s3_config(bucket: str, model_dir: Any, **kw: Any) -> JobConfig:
    return config(f"s3://{bucket}/corpus", f"s3://{bucket}/embeddings", model_dir, **kw)


def counts(added: int = 0, changed: int = 0, removed: int = 0, unchanged: int = 0) -> dict[str, int]:
    return {"added": added, "changed": changed, "removed": removed, "unchanged": unchanged}


def names(uris: list[str]) -> list[str]:
    return sorted(u.rsplit("/", 1)[-1] for u in uris)


def by_relpath(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["source"]["relpath"]: s for s in manifest["shards"]}


def shard_files(entry: dict[str, Any]) -> list[str]:
    return [f["path"] for f in entry["files"]] + [entry[k]["path"] for k in ("rejects", "ids") if entry.get(k)]


def referenced(manifest: dict[str, Any]) -> set[str]:
    return {f for entry in manifest["shards"] for f in shard_files(entry)}


def stat_files(out: Path, rels: list[str]) -> dict[str, tuple[int, bytes]]:
    """mtime (ns) and content of local output files: 'untouched' means both equal."""
    return {rel: ((out / rel).stat().st_mtime_ns, (out / rel).read_bytes()) for rel in rels}


def assert_same_vectors(got: dict[Any, np.ndarray], want: dict[Any, np.ndarray]) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)  # same ids (read_output asserts no duplicates)
    ids = sorted(want, key=str)
    np.testing.assert_allclose(np.stack([got[i] for i in ids]), np.stack([want[i] for i in ids]), atol=1e-6)


def published(out: Any, fs: Any = None) -> dict[str, Any]:
    """manifest.json as readers see it."""
    if fs is None:
        return json.loads(Path(out, "manifest.json").read_bytes())
    return json.loads(fs.cat_file(f"{str(out).removeprefix('s3://')}/manifest.json"))


def edit_corpus(inp: Path) -> None:
    """Change part-0001 (more rows, new texts), delete part-0002, add sub/part-0100."""
    write_shard(inp / "part-0001.jsonl", list(range(10_000, 10_045)), make_texts(45, seed=901))
    (inp / "part-0002.jsonl.gz").unlink()
    # ids of one type across shards (a corpus mixing types is refused: test_rows.py)
    write_shard(inp / "sub" / "part-0100.parquet", list(range(90_000, 90_025)), make_texts(25, seed=902))


def race(loser: JobConfig, winner: JobConfig) -> dict[str, Any]:
    """Two refreshes that both read the same newest version: the winner commits while the
    loser embeds (deterministic: the loser's executor runs the whole winner first)."""
    won: dict[str, Any] = {}

    def executor(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
        won["manifest"] = embed_job(winner)
        yield from run_local(tasks, spec, compute)

    with pytest.raises(ConcurrentCommitError, match=r"v000002\.json was committed by another run"):
        embed_job(loser, executor=executor)
    return won["manifest"]


def dying(after: int) -> Any:
    """An executor that embeds `after` shards completely, one at a time, then dies (the local
    executor shares batches among small units, whose commits may finish in any order:
    tests/test_local_batches.py kills a run in the middle of such a group)."""

    def executor(tasks: list[ShardTask], spec: WorkerSpec, compute: ComputeConfig) -> Iterator[ShardResult]:
        worker = EmbeddingWorker(spec, compute.threads_per_actor)
        for done, task in enumerate(tasks, start=1):
            yield worker.embed(task)
            if done == after:
                raise Killed

    return executor
