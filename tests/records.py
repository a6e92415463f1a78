"""Small typed manifest records for unit tests (no model, no I/O)."""

from __future__ import annotations

from e5ray.corpus.sources import SourceShard
from e5ray.model.space import EmbeddingSpace
from e5ray.output.manifest import FileRef, Manifest, RunInfo, ShardEntry

SPACE = EmbeddingSpace("tiny", "ab" * 32, dim=8, max_length=64, pooling="mean", normalized=True)


def source(name: str, stamp: str = "mtime:1", size: int = 100) -> SourceShard:
    return SourceShard(f"/corpus/{name}", name, size, stamp, "parquet")


def entry(name: str, key: str = "k", rows: int = 10, rejected: int = 0) -> ShardEntry:
    rejects = FileRef(f"shards/{name}.rejects.jsonl", 40, "cd" * 32, rejected) if rejected else None
    return ShardEntry(
        files=(FileRef(f"shards/{name}.parquet", 1000, "ef" * 32, rows),),
        rows=rows,
        input_rows=rows + rejected,
        rejected=rejected,
        truncated=1,
        tokens=50,
        padded_tokens=60,
        seconds=0.5,
        embed_seconds=0.25,
        source=source(name),
        key=key,
        space_fingerprint=SPACE.fingerprint,
        rejects=rejects,
    )


def run_info() -> RunInfo:
    return RunInfo(
        id="r1",
        started="2026-01-01T00:00:00+00:00",
        finished="2026-01-01T00:00:01+00:00",
        seconds=1.0,
        e5ray_version="0.1.0",
        full=False,
        device="cpu",
        executor="local",
        embedded_shards=2,
        reused_shards=0,
        carried_shards=0,
        tokens=100,
        padded_tokens=120,
        tokens_per_s=100.0,
    )


def manifest(*entries: ShardEntry, version: int = 1) -> Manifest:
    return Manifest(
        version=version,
        previous=None,
        space=SPACE,
        input={"uri": "/corpus", "format": None, "id_column": "id", "text_column": "text"},
        shards=tuple(entries),
        changes={"counts": {}},
        run=run_info(),
    )
