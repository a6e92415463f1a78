"""Attention fusion: run onnxruntime's transformer optimiser on an encoder, once, and cache it.

onnxruntime's own session optimisations (ORT_ENABLE_ALL) fuse LayerNorm and GELU in a
PyTorch export of BERT or XLM-R but leave attention as MatMul, Div, Add, Softmax, MatMul
per layer. The transformer optimiser (`onnxruntime.transformers.optimizer`) recognises the
exporter's attention pattern and replaces it with one `Attention` node per layer (and the
embeddings with `EmbedLayerNormalization`), which CPU and CUDA kernels run in one pass.

Invariants:
* The fused copy computes the same function (tests hold it to cosine >= 0.99999), so it
  stays in the source's embedding space; the space names the source file, not the copy.
* The mask becomes a per-row length (MaskIndexEnd): valid because e5ray pads on the right.
* A copy is only used when attention did fuse (`FusionReport.attention > 0`); otherwise
  the source is loaded as it is. The report is kept beside the copy as JSON so a process
  that finds the copy knows the outcome without loading it.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Fused attention operators the optimiser may emit.
ATTENTION_OPS = ("Attention", "MultiHeadAttention", "PackedAttention", "GroupQueryAttention")
# Above this many initializer bytes the copy is saved with external data (protobuf's 2 GiB limit).
EXTERNAL_DATA_BYTES = 1_800_000_000


@dataclass(frozen=True)
class FusionReport:
    """Node counts of an encoder before and after the transformer optimiser."""

    nodes_before: int
    nodes_after: int
    softmax_before: int
    softmax_after: int
    attention: int  # fused attention nodes after
    ops_after: dict[str, int]

    @property
    def fused(self) -> bool:
        return self.attention > 0

    def summary(self) -> str:
        return (
            f"{self.nodes_before} -> {self.nodes_after} nodes; Softmax {self.softmax_before} -> "
            f"{self.softmax_after}; fused attention nodes {self.attention}"
        )


def op_counts(nodes: Iterable[Any]) -> Counter[str]:
    """How many nodes of each op type (`nodes`: NodeProtos)."""
    return Counter(node.op_type for node in nodes)


def model_dims(source: Path) -> tuple[int, int]:
    """(num_heads, hidden_size) from the config.json beside `source`, (0, 0) when absent.

    The optimiser can read them off the graph's reshape constants, but not on every
    exporter's graph; the config is authoritative when it is there.
    """
    config_path = source.parent / "config.json"
    try:
        config = json.loads(config_path.read_text())
        return int(config["num_attention_heads"]), int(config["hidden_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0, 0


def optimize_encoder(source: Path, *, use_gpu: bool = False) -> tuple[Any, FusionReport]:
    """Run the transformer optimiser (model_type 'bert', which also covers XLM-R) on `source`.

    Returns the optimiser's model wrapper (an `OnnxModel`) and the node counts.
    """
    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    before = op_counts(onnx.load(str(source), load_external_data=False).graph.node)
    heads, hidden = model_dims(source)
    # Its "Model producer not matched ... specify --model_type" warning (any non-torch
    # producer) names a flag e5ray users do not have; whether attention fused is in the report.
    quiet = logging.getLogger("onnxruntime.transformers.optimizer")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        optimized = optimize_model(
            str(source), model_type="bert", num_heads=heads, hidden_size=hidden, opt_level=0, use_gpu=use_gpu
        )
    finally:
        quiet.setLevel(level)
    after = op_counts(optimized.model.graph.node)
    report = FusionReport(
        nodes_before=sum(before.values()),
        nodes_after=sum(after.values()),
        softmax_before=before["Softmax"],
        softmax_after=after["Softmax"],
        attention=sum(after[op] for op in ATTENTION_OPS),
        ops_after=dict(sorted(after.items())),
    )
    return optimized, report


def save_optimized(optimized: Any, target: Path) -> None:
    """Save an optimiser result, splitting its weights out when protobuf could not hold them."""
    size = sum(t.ByteSize() for t in optimized.model.graph.initializer)
    optimized.save_model_to_file(str(target), use_external_data_format=size > EXTERNAL_DATA_BYTES)


def fuse_attention(source: Path, target: Path) -> FusionReport:
    """Write the fused fp32 copy of `source` to `target` and its report to `report_path(target)`."""
    optimized, report = optimize_encoder(source)
    save_optimized(optimized, target)
    write_report(report, target)
    return report


def report_path(target: Path) -> Path:
    return target.with_name(target.name + ".fusion.json")


def write_report(report: FusionReport, target: Path) -> None:
    tmp = report_path(target).with_name(report_path(target).name + f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps(asdict(report), indent=1))
    os.replace(tmp, report_path(target))


def read_report(target: Path) -> FusionReport | None:
    """The report kept beside `target`, or None when missing or unreadable."""
    try:
        return FusionReport(**json.loads(report_path(target).read_text()))
    except (OSError, ValueError, TypeError):
        return None
