"""`run_benchmark`: the CPU or GPU benchmark, its report printed and its JSON written."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from e5ray.bench.config import BenchConfig
from e5ray.bench.cpu import run_cpu_benchmark
from e5ray.bench.gpu import run_gpu_benchmark
from e5ray.bench.report import format_report
from e5ray.model.fusion import read_report


def run_benchmark(
    cfg: BenchConfig, out: str | os.PathLike[str] | None = None, log: Callable[[str], None] = print
) -> dict[str, Any]:
    """Run the CPU or GPU benchmark, print the report, write the JSON to `out`; returns the result."""
    if cfg.device not in ("cpu", "gpu"):
        raise ValueError(f"unknown device {cfg.device!r}; valid: cpu, gpu")
    result = run_gpu_benchmark(cfg, log) if cfg.device == "gpu" else run_cpu_benchmark(cfg, log)
    result["fusion"] = _fusion(result)
    log(format_report(result))
    fusion = result["fusion"]
    log(
        f"model graph: {result['model'].get('graph') or 'given export'}; attention fusion "
        f"({fusion['copy'] if fusion else 'no'} copy): {fusion['summary'] if fusion else 'none'}"
    )
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1, default=float))
        log(f"wrote {out}")
    return result


def _fusion(result: dict[str, Any]) -> dict[str, Any] | None:
    """What onnxruntime's transformer optimiser fused in the model the embedder loaded
    (the fp32 copy's report on the CPU, the fp16 copy's on the GPU), when it left one."""
    onnx_path = Path(result["model"]["dir"]) / result["model"]["onnx_file"]
    for tag in ("fp16", "fused"):
        report = read_report(onnx_path.with_name(f"{onnx_path.stem}.{tag}.onnx"))
        if report is not None:
            return {"copy": tag, "summary": report.summary(), **asdict(report)}
    return None
