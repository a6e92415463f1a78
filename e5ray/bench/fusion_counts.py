"""Node counts before and after onnxruntime's transformer optimiser, for a random-weight model.

Shows whether attention fuses on a graph layout (`e5ray.testing.export.GRAPHS`): on the
export-shaped graph one Attention node per layer appears and every Softmax goes; on the
node-by-node graph they stay. Used by `jobs/fusion_counts.py` and quoted in BENCHMARKS.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from e5ray.bench.config import DEFAULT_ARCH
from e5ray.testing.shapes import SHAPES


def fusion_counts(
    shape: str, arch: str | None = None, graph: str = "export", use_gpu: bool = False, full_vocab: bool = False
) -> dict[str, Any]:
    """Node counts before and after onnxruntime's transformer optimiser for a random model.

    Unless `full_vocab`, the word table is cut to what the tokenizer needs: it changes
    no node, only the file size (the e5-large table alone is 1 GB).
    """
    from e5ray.fusion import optimize_encoder
    from e5ray.testing.export import write_model

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    arch = arch or DEFAULT_ARCH.get(shape, "xlmr")
    encoder = SHAPES[shape] if full_vocab else replace(SHAPES[shape], vocab_size=SHAPES["tiny"].vocab_size)
    with tempfile.TemporaryDirectory(prefix="e5ray-fusion-") as tmp:
        write_model(Path(tmp), graph=graph, arch=arch, shape=encoder)
        _, report = optimize_encoder(Path(tmp) / "model.onnx", use_gpu=use_gpu)
    return {"shape": shape, "arch": arch, "graph": graph, "use_gpu": use_gpu, **asdict(report)}
