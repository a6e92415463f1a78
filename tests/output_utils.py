"""Helpers for tests that make an output and read it back (long texts, pooling, search).

They keep the tests independent of how a job is configured and how a manifest names its
files: the one place to change when those move.
"""

from __future__ import annotations

from typing import Any

from corpus_utils import embed_job

from e5ray.config import JobConfig
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


def embed_output(inp: Any, out: Any, model_dir: Any, **options: Any) -> dict[str, Any]:
    """Run the job in process (no Ray) with the tiny model; returns the manifest as JSON."""
    options.setdefault("model", "tiny")
    return embed_job(
        JobConfig.from_options(input=str(inp), output=str(out), model_path=str(model_dir), executor="local", **options)
    )


def verify(out: Any) -> list[str]:
    return verify_output(OutputDir(str(out)))


def shard_file(entry: dict[str, Any]) -> str:
    """The vector file of a manifest's shard entry, relative to the output root."""
    (file,) = entry["files"]  # Parquet: one file per shard
    return str(file["path"])
