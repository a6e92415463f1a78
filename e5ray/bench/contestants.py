"""The contestants, each a stage run in its own process: params and results are JSON, vectors .npy.

1. `stage_fastembed`: plain fastembed as a user calls it (defaults, batch 256, input order);
2. `stage_embedder`: e5ray's `E5Embedder` in this process;
3. `stage_job`: the whole job (Parquet shards -> `run_job(executor="ray")` -> shards + manifest).
The job starts its own local Ray inside `run_job`; this module never imports ray.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e5ray.bench.config import FASTEMBED_BATCH, PREFIX, WARMUP_DOCS
from e5ray.bench.monitor import ProcessTreeSampler, own_cpu_seconds

if TYPE_CHECKING:
    from e5ray.config import JobConfig
    from e5ray.model.embedder import E5Embedder


def texts_of(params: dict[str, Any]) -> list[str]:
    texts = json.loads(Path(params["corpus"]).read_text(encoding="utf-8"))
    return texts[: params["docs"]] if params.get("docs") else texts


def stage_fastembed(params: dict[str, Any]) -> dict[str, Any]:
    """Plain fastembed as a user calls it: defaults, batch_size 256, input order."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    texts = [PREFIX + t for t in texts_of(params)]  # the same work as e5ray's "passage" prefix
    name = params["model"]
    TextEmbedding.add_custom_model(
        model=name,
        pooling=PoolingType.MEAN,
        normalization=True,
        sources=ModelSource(hf="e5ray-bench/none"),
        dim=params["dim"],
        model_file=params["onnx_file"],
    )
    t0 = time.perf_counter()
    model = TextEmbedding(
        model_name=name, specific_model_path=params["model_dir"], local_files_only=True, threads=params.get("threads")
    )
    load_seconds = time.perf_counter() - t0
    list(model.embed(texts[:WARMUP_DOCS]))
    t0, c0 = time.perf_counter(), own_cpu_seconds()
    vectors = np.stack(list(model.embed(texts)))
    seconds, cpu = time.perf_counter() - t0, own_cpu_seconds() - c0
    np.save(params["vectors"], vectors.astype(np.float32))
    # Cross-check the padding estimate with fastembed's own tokenizer (outside the timing).
    inner: Any = model.model  # the ONNX text model fastembed wraps; its tokenizer is what embed() used
    tokenizer = inner.tokenizer
    real = padded = 0
    for start in range(0, len(texts), FASTEMBED_BATCH):
        encodings = tokenizer.encode_batch(texts[start : start + FASTEMBED_BATCH])
        padded += len(encodings) * len(encodings[0].ids)
        real += sum(sum(e.attention_mask) for e in encodings)
    return {
        "docs": len(texts),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "load_seconds": load_seconds,
        "batch_size": FASTEMBED_BATCH,
        "max_length": (tokenizer.truncation or {}).get("max_length"),
        "own_tokens": real,
        "own_padded_tokens": padded,
    }


def embedder_for(params: dict[str, Any], **overrides: Any) -> E5Embedder:
    """The contestant's E5Embedder, as `params` describe it (imported here: the stage process loads only what it runs)."""
    from e5ray.model.embedder import E5Embedder

    kwargs = {
        "model": params["model"],
        "model_path": params["model_dir"],
        "threads": params.get("threads"),
        "precision": params.get("precision", "fp32"),
        "int8_min_cosine": params.get("int8_min_cosine", -1.0),
        "device": params.get("device", "cpu"),
    }
    kwargs.update(overrides)
    return E5Embedder(**kwargs)


def stage_embedder(params: dict[str, Any]) -> dict[str, Any]:
    """e5ray's embedder in this process: `E5Embedder(...).embed(texts, "passage")`
    (what `embed_passages` runs, keeping the statistics)."""
    texts = texts_of(params)
    t0 = time.perf_counter()
    embedder = embedder_for(params)
    load_seconds = time.perf_counter() - t0
    embedder.embed(texts[:WARMUP_DOCS])
    t0, c0 = time.perf_counter(), own_cpu_seconds()
    result = embedder.embed(texts, "passage")
    seconds, cpu = time.perf_counter() - t0, own_cpu_seconds() - c0
    np.save(params["vectors"], result.vectors)
    return {
        "docs": len(texts),
        "seconds": seconds,
        "cpu_seconds": cpu,
        "run_seconds": result.seconds,
        "tokenize_seconds": seconds - result.seconds,
        "load_seconds": load_seconds,
        "tokens": result.tokens,
        "padded_tokens": result.padded_tokens,
        "batches": result.batches,
        "token_budget": embedder.token_budget,
        "max_batch_rows": embedder.max_batch_rows,
        "threads": embedder.threads,
        "precision": embedder.precision,
        "int8_gate_cosine": getattr(embedder, "int8_cosine", None),
    }


def _job_config(params: dict[str, Any], input_uri: str, output_uri: str) -> JobConfig:
    from e5ray.config import JobConfig

    return JobConfig.from_options(
        input=input_uri,
        output=output_uri,
        model=params["model"],
        model_path=params["model_dir"],
        precision=params.get("precision"),
        threads_per_actor=params.get("threads"),
        executor="ray",
        int8_min_cosine=params.get("int8_min_cosine", -1.0),
    )


def _read_vectors(manifest: dict[str, Any], output: str) -> np.ndarray:
    """The job's vectors, row i = input id i (ids are positions in the corpus)."""
    import pyarrow.parquet as pq

    vectors = None
    for shard in manifest["shards"]:
        table = pq.read_table(Path(output) / shard["files"][0]["path"])
        ids = np.asarray(table.column("id").to_pylist(), dtype=np.int64)
        emb = np.asarray(
            table.column("embedding").combine_chunks().values.to_numpy(zero_copy_only=False), dtype=np.float32
        ).reshape(len(ids), -1)
        if vectors is None:
            vectors = np.zeros((manifest["totals"]["embedded"], emb.shape[1]), dtype=np.float32)
        vectors[ids] = emb
    if vectors is None:
        raise RuntimeError(f"the benchmark job wrote no shards to {output}")
    return vectors


def stage_job(params: dict[str, Any]) -> dict[str, Any]:
    """The whole job: Parquet shards -> run_job(executor="ray") on a local Ray -> shards + manifest.

    `run_job` starts the local Ray itself (the library's Ray executor does; the benchmark
    never imports ray). A warm-up job of one small shard starts it, so the timed run, like
    a run on a long-lived cluster, does not pay Ray's start-up (about 4 s on 2 CPUs): it
    does pay planning, the actor's start and model load, embedding and the commit. Ray is
    shut down when this process exits.
    """
    from e5ray.job.run import run_job
    from e5ray.model.embedder import available_cpus

    t0 = time.perf_counter()
    run_job(_job_config(params, params["warmup_input"], params["warmup_output"]))
    warmup_seconds = time.perf_counter() - t0
    sampler = ProcessTreeSampler()
    sampler.sample()
    # Warm-up actors that are still exiting are not the timed run's memory.
    sampler.forget(sampler.actor_pids())
    sampler.start()
    try:
        t0, c0 = time.perf_counter(), sampler.cpu_seconds()
        manifest = run_job(_job_config(params, params["input"], params["output"])).to_dict()
        seconds = time.perf_counter() - t0
        sampler.sample()
        cpu = sampler.cpu_seconds() - c0
    finally:
        sampler.stop()
    np.save(params["vectors"], _read_vectors(manifest, params["output"]))
    run = manifest["run"]
    return {
        "docs": manifest["totals"]["embedded"],
        "seconds": seconds,
        "cpu_seconds": cpu,
        "ray_start_seconds": warmup_seconds,
        # The local Ray takes every CPU of the machine; affinity can only narrow what the actors use.
        "ray_cpus": available_cpus(),
        "tokens": run["tokens"],
        "padded_tokens": run["padded_tokens"],
        "manifest_seconds": run["seconds"],
        "manifest_tokens_per_s": run["tokens_per_s"],
        "shards": len(manifest["shards"]),
        "shard_seconds": round(sum(s["seconds"] for s in manifest["shards"]), 3),
        "shard_embed_seconds": round(sum(s["embed_seconds"] for s in manifest["shards"]), 3),
        "descendants_cpu_seconds": sampler.cpu_seconds() - sampler.ticks.get(os.getpid(), 0) / os.sysconf("SC_CLK_TCK"),
        "rss": sampler.summary(),
    }


def stage_quantize(params: dict[str, Any]) -> dict[str, Any]:
    """Make (or find) the int8 copy of the model, in a process of its own so that the
    embedder's peak RSS does not include quantisation."""
    from e5ray.model.precision import prepare_model_file

    t0 = time.perf_counter()
    path = prepare_model_file(Path(params["model_dir"]) / params["onnx_file"], "int8")
    return {"seconds": time.perf_counter() - t0, "path": str(path), "bytes": path.stat().st_size}
