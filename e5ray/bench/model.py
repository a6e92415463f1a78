"""The model a benchmark runs: a random-weight encoder of a real E5 shape, or a user's own export.

Speed depends on the shape, not on the weights, so by default the benchmark writes a
synthetic model of the asked shape (reused when an earlier run left it in the same
workdir). With `model_path` it runs the user's directory instead (an Optimum/fastembed
export: `model.onnx` or `onnx/model.onnx` beside tokenizer.json and config.json); its shape,
needed for the FLOP count of the ceiling, is read from its config.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from e5ray.bench.ceiling import non_embedding_params
from e5ray.bench.config import BenchConfig
from e5ray.model.resolve import locate_files
from e5ray.testing.archs import ARCHS, MODEL_TYPE_TO_ARCH
from e5ray.testing.shapes import SHAPES, EncoderShape


@dataclass(frozen=True)
class BenchModel:
    """Where the benchmarked model is and what shape it has."""

    name: str  # the model name the contestants load it under (never a catalogue name)
    directory: Path
    onnx_file: str  # relative to `directory`: fastembed takes the file name, not the path
    tokenizer_path: Path
    shape: EncoderShape
    info: dict[str, Any]  # what the report prints about the model

    @property
    def onnx_path(self) -> Path:
        return self.directory / self.onnx_file


def shape_from_config(config: dict[str, Any]) -> tuple[str, EncoderShape]:
    """(arch, shape) of a BERT or XLM-R model from its HF config.json."""
    model_type = config.get("model_type")
    if model_type not in MODEL_TYPE_TO_ARCH:
        raise ValueError(
            f"config.json model_type {model_type!r} is not an E5 encoder type; valid: {', '.join(MODEL_TYPE_TO_ARCH)}"
        )
    arch = MODEL_TYPE_TO_ARCH[model_type]
    try:
        shape = EncoderShape(
            layers=int(config["num_hidden_layers"]),
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            intermediate=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            max_positions=int(config.get("max_position_embeddings", 512)) - ARCHS[arch].position_offset,
        )
    except KeyError as exc:
        raise ValueError(f"config.json lacks {exc.args[0]!r}, needed for the FLOP count of the ceiling") from None
    return arch, shape


def prepare_model(cfg: BenchConfig, workdir: Path) -> BenchModel:
    """The user's model (`cfg.model_path`), or a random-weight one written (or reused) in `workdir`."""
    t0 = time.perf_counter()
    if cfg.model_path:
        files = locate_files(Path(cfg.model_path).expanduser().resolve())
        directory = Path(cfg.model_path).expanduser().resolve()
        arch, shape = shape_from_config(json.loads(files.config_path.read_text(encoding="utf-8")))
        label, reused, tokenizer_path = directory.name, True, files.tokenizer_path
        onnx_file = str(files.onnx_path.relative_to(directory))
    else:
        arch = cfg.resolved_arch()
        if cfg.shape not in SHAPES:
            raise ValueError(f"unknown shape {cfg.shape!r}; valid: {', '.join(SHAPES)}")
        from e5ray.testing.export import write_model

        shape, label, onnx_file = SHAPES[cfg.shape], cfg.shape, "model.onnx"
        directory = workdir / f"model-{cfg.graph}-{arch}-{cfg.shape}"
        reused = (directory / "config.json").exists()
        if not reused:
            write_model(directory, graph=cfg.graph, arch=arch, shape=cfg.shape, seed=cfg.seed)
        tokenizer_path = directory / "tokenizer.json"
    info = {
        "shape": label,
        "arch": arch,
        **asdict(shape),
        "non_embedding_params": non_embedding_params(shape),
        "dir": str(directory),
        "onnx_file": onnx_file,
        "source": "model_path" if cfg.model_path else "synthetic",
        "graph": None if cfg.model_path else cfg.graph,
        "write_seconds": round(time.perf_counter() - t0, 2),
        "reused": reused,
    }
    return BenchModel(f"e5ray-bench/{label}", directory, onnx_file, tokenizer_path, shape, info)


def shallow_shape(dim: int) -> EncoderShape:
    """One encoder layer of width `dim` over the tiny vocabulary: vectors as wide as a real
    model's (dim 384 = e5-small) at a fraction of its embedding cost. For benchmarks whose
    subject is what happens to the vectors after embedding (exports, change feeds), where the
    width counts and the depth does not."""
    heads = next(h for h in (12, 8, 4, 2, 1) if dim % h == 0)
    return EncoderShape(1, dim, heads, 4 * dim, SHAPES["tiny"].vocab_size)


def prepare_shallow_model(dim: int, seed: int, workdir: Path) -> BenchModel:
    """A random-weight `shallow_shape(dim)` BERT export written (or reused) in `workdir`."""
    from e5ray.testing.export import write_model

    t0, shape, label = time.perf_counter(), shallow_shape(dim), f"shallow-{dim}"
    directory = workdir / f"model-export-bert-{label}"
    reused = (directory / "config.json").exists()
    if not reused:
        write_model(directory, graph="export", arch="bert", shape=shape, seed=seed)
    info = {
        "shape": label,
        "arch": "bert",
        **asdict(shape),
        "non_embedding_params": non_embedding_params(shape),
        "dir": str(directory),
        "onnx_file": "model.onnx",
        "source": "synthetic",
        "graph": "export",
        "write_seconds": round(time.perf_counter() - t0, 2),
        "reused": reused,
    }
    return BenchModel(
        f"e5ray-bench/{label}",
        directory,
        "model.onnx",
        tokenizer_path=directory / "tokenizer.json",
        shape=shape,
        info=info,
    )
