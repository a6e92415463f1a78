"""Helpers for tests that make an output and read it back (long texts, pooling, search).

They keep the tests independent of how a job is configured and how a manifest names its
files: the one place to change when those move.
"""

from __future__ import annotations

from typing import Any

from e5ray.job import JobConfig, run_job
from e5ray.verify import verify_output


def embed_output(inp: Any, out: Any, model_dir: Any, **options: Any) -> dict[str, Any]:
    """Run the job in process (no Ray) with the tiny model; returns the manifest as JSON."""
    options.setdefault("model", "tiny")
    config = JobConfig(input=str(inp), output=str(out), model_path=str(model_dir), executor="local", **options)
    return run_job(config)


def verify(out: Any) -> list[str]:
    return verify_output(str(out))


def shard_file(entry: dict[str, Any]) -> str:
    """The vector file of a manifest's shard entry, relative to the output root."""
    return str(entry["path"])
