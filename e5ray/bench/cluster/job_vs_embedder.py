"""The whole job on a local Ray against the in-process embedder, on the same sample-corpus texts.

    python -m e5ray.bench scale job-vs-embedder --shards 8 --docs 450 --shape e5-small

`--shards` Parquet shards of `--docs` documents drawn from the sample corpus (samples/corpus,
read with e5ray's own readers), embedded twice with the same random-weight export-shaped
model: by the in-process embedder (model loaded and warmed up first, as jobs/benchmark.py's
contestant 2), then by the whole job on a local Ray of 2 CPUs (ray.init and a one-shard
warm-up job not counted, as its contestant 3: the timed job pays planning, actor start, model
load, embedding, writing and the commit). Measures both tokens/s and their ratio. Invariant:
both embed the same tokens (every row embedded, `reuse="none"`).
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import ray

from e5ray.bench.cluster.small_files import isolated_temp, start_local_ray, timed_job

CHECKOUT = Path(__file__).resolve().parents[3]


def sample_texts() -> list[str]:
    """The good texts of the sample corpus (samples/corpus), read with e5ray's own readers."""
    from e5ray.corpus.sources import discover, read_chunks

    texts: list[str] = []
    for source in discover(str(CHECKOUT / "samples" / "corpus")):
        for chunk in read_chunks(source):
            texts.extend(t for t in chunk.texts if isinstance(t, str) and t.strip())
    return texts


def write_shards(work: Path, docs: list[str], shards: int, per_shard: int) -> None:
    """The timed corpus in work/in and a one-row warm-up corpus in work/warmup."""
    for d in ("in", "warmup"):
        (work / d).mkdir()
    for s in range(shards):
        rows = range(s * per_shard, (s + 1) * per_shard)
        table = pa.table({"id": list(rows), "text": [docs[i] for i in rows]})
        pq.write_table(table, work / "in" / f"s{s:02d}.parquet")
    pq.write_table(pa.table({"id": [0], "text": [docs[0]]}), work / "warmup" / "w.parquet")


def time_embedder(model_dir: Path, shape: str, docs: list[str]) -> tuple[int, float]:
    """The in-process embedder, warmed up: the tokens it embedded and its seconds."""
    from e5ray.model.embedder import E5Embedder, available_cpus

    embedder = E5Embedder(f"e5ray-bench/{shape}", model_path=model_dir, threads=available_cpus())
    embedder.embed(docs[:32])
    t0 = time.perf_counter()
    alone = embedder.embed(docs, "passage")
    return alone.tokens, time.perf_counter() - t0


def time_job(work: Path, model_dir: Path, shape: str) -> tuple[dict[str, Any], float]:
    """The job on a local Ray after a warm-up job: its manifest and seconds."""
    temp = isolated_temp()
    start_local_ray(temp)
    try:
        # Every row embedded, as the embedder does: the docs repeat the corpus's 330 texts,
        # and row reuse would fold the repeats within a shard (fewer tokens, not faster).
        model = {"model": f"e5ray-bench/{shape}", "reuse": "none"}
        timed_job(work / "warmup", work / "warmup-out", str(model_dir), **model)
        return timed_job(work / "in", work / "out", str(model_dir), **model)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def job_vs_embedder(args: argparse.Namespace) -> dict[str, Any]:
    from e5ray.testing.export import write_model

    model_dir = Path(args.workdir) / f"model-export-bert-{args.shape}"
    if not (model_dir / "config.json").exists():
        write_model(model_dir, graph="export", arch="bert", shape=args.shape, seed=0)
    pool, rng = sample_texts(), random.Random(0)
    docs = [rng.choice(pool) for _ in range(args.shards * args.docs)]
    work = Path(tempfile.mkdtemp(prefix="e5je-"))
    write_shards(work, docs, args.shards, args.docs)
    embedder_tokens, embedder_seconds = time_embedder(model_dir, args.shape, docs)
    manifest, job_seconds = time_job(work, model_dir, args.shape)
    shutil.rmtree(work, ignore_errors=True)
    tokens = manifest["totals"]["tokens"]
    assert tokens == embedder_tokens, (tokens, embedder_tokens)  # the same texts, the same tokens
    return {
        "bench": "job-vs-embedder",
        "shape": args.shape,
        "shards": args.shards,
        "docs": len(docs),
        "tokens": tokens,
        "embedder_seconds": round(embedder_seconds, 2),
        "embedder_tokens_per_s": round(tokens / embedder_seconds, 1),
        "job_seconds": round(job_seconds, 2),
        "job_tokens_per_s": round(tokens / job_seconds, 1),
        "job_over_embedder": round(embedder_seconds / job_seconds, 3),
        "job_embed_stage_tokens_per_s": manifest["run"]["tokens_per_s"],
    }
