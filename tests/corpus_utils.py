"""Helpers that write small corpora for job tests."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from e5ray.config import JobConfig
from e5ray.job.run import run_job
from e5ray.testing import sample_words


def make_texts(n: int, seed: int, max_words: int = 40) -> list[str]:
    words = sample_words()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(1, max_words, size=n)]


def write_shard(path: Path | str, ids: list[Any], texts: list[Any], fs: Any = None) -> None:
    """Write a shard in the format its name says (.parquet, .jsonl, .jsonl.gz), locally or to `fs`."""
    name = str(path)
    if name.endswith(".parquet"):
        sink = pa.BufferOutputStream()
        pq.write_table(pa.table({"id": ids, "text": texts}), sink)
        data = sink.getvalue().to_pybytes()
    else:
        data = "".join(
            json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(ids, texts, strict=False)
        ).encode()
        if name.endswith(".gz"):
            data = gzip.compress(data, mtime=0)
    if fs is None:
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(data)
    else:
        fs.pipe_file(name, data)


def write_corpus(root: Path | str, shards: int = 3, rows: int = 40, seed: int = 0, fs: Any = None) -> dict[Any, str]:
    """Shards in mixed formats with globally unique ids; returns id -> text."""
    formats = [".parquet", ".jsonl", ".jsonl.gz"]
    everything: dict[Any, str] = {}
    for s in range(shards):
        ids = list(range(s * 10_000, s * 10_000 + rows))
        texts = make_texts(rows, seed * 100 + s)
        write_shard(f"{root}/part-{s:04d}{formats[s % 3]}", ids, texts, fs)
        everything.update(zip(ids, texts, strict=False))
    return everything


def read_output(output: str, fs: Any = None) -> dict[Any, np.ndarray]:
    """id -> vector from the shards that output's manifest.json names."""
    import fsspec

    fs = fs or fsspec.filesystem("file")
    root = output.removeprefix("s3://").rstrip("/")
    manifest = json.loads(fs.cat_file(f"{root}/manifest.json"))
    vectors: dict[Any, np.ndarray] = {}
    for shard in manifest["shards"]:
        (file,) = shard["files"]  # Parquet: one file per shard
        with fs.open(f"{root}/{file['path']}", "rb") as fh:
            table = pq.read_table(fh)
        ids = table.column("id").to_pylist()
        if not ids:  # a shard whose rows were all rejected
            continue
        emb = np.asarray(table.column("embedding").combine_chunks().flatten()).reshape(len(ids), -1)
        for i, v in zip(ids, emb, strict=False):
            assert i not in vectors, f"id {i!r} appears twice in the output"
            vectors[i] = v
    return vectors


def embed_job(config: JobConfig, executor: Any = None) -> dict[str, Any]:
    """run_job, returning the committed manifest as the JSON dict that readers of manifest.json see."""
    return run_job(config, executor).to_dict()
