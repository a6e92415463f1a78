"""`run_benchmark`: the CPU or GPU benchmark, its report printed and its JSON written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from e5ray.bench.config import BenchConfig
from e5ray.bench.cpu import run_cpu_benchmark
from e5ray.bench.gpu import run_gpu_benchmark
from e5ray.bench.report import format_report


def run_benchmark(
    cfg: BenchConfig, out: str | os.PathLike[str] | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the CPU or GPU benchmark, print the report, write the JSON to `out`; returns the result."""
    if cfg.device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device {cfg.device!r}; valid: cpu, gpu")
    result = run_gpu_benchmark(cfg, log) if cfg.device == "gpu" else run_cpu_benchmark(cfg, log)
    log(format_report(result))
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, default=float))
        log(f"wrote {out}")
    return result
