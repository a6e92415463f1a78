"""Which model a benchmark runs: a random-weight one of a named shape and graph, or a real export.

`jobs/benchmark.py` finds its model at `<workdir>/model-<arch>-<shape>` and reuses one
that is already there; `place_model` puts the right one there before the run:

* ``graph="export"``: `e5ray.testing_export.write_export_model` (the layout of real
  exports, where attention fuses); ``graph="nodes"``: `e5ray.testmodels.write_test_model`
  (the node-by-node layout the first BENCHMARKS.md tables were measured on);
* ``model_path``: a real export directory, linked in; its shape (for the FLOP ceiling) and
  architecture are read from its config.json.

Invariant: a workdir never silently mixes graphs: a model already placed with another
graph or from another path is refused, naming both.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from e5ray.benchmarking import DEFAULT_ARCH
from e5ray.testmodels import SHAPES, EncoderShape

ARCH_OF_MODEL_TYPE = {"bert": "bert", "xlm-roberta": "xlmr"}


def shape_of_config(config: dict[str, Any]) -> EncoderShape:
    """The EncoderShape a HF config.json describes (positions net of RoBERTa's offset)."""
    try:
        arch = ARCH_OF_MODEL_TYPE[config["model_type"]]
        offset = int(config.get("pad_token_id", 1)) + 1 if arch == "xlmr" else 0
        return EncoderShape(
            layers=int(config["num_hidden_layers"]),
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            intermediate=int(config["intermediate_size"]),
            vocab_size=int(config["vocab_size"]),
            max_positions=int(config["max_position_embeddings"]) - offset,
        )
    except KeyError as exc:
        raise ValueError(
            f"config.json lacks {exc}; needs model_type ({', '.join(ARCH_OF_MODEL_TYPE)}), num_hidden_layers, "
            "hidden_size, num_attention_heads, intermediate_size, vocab_size, max_position_embeddings"
        ) from None


def shape_key_for(shape: EncoderShape) -> str | None:
    """The SHAPES name with the same compute (layers, hidden, heads, intermediate), if any."""
    for name, known in SHAPES.items():
        if (known.layers, known.hidden, known.heads, known.intermediate) == (
            shape.layers,
            shape.hidden,
            shape.heads,
            shape.intermediate,
        ):
            return name
    return None


def _placed_graph(model_dir: Path) -> str:
    if model_dir.is_symlink():
        return f"path:{os.readlink(model_dir)}"
    config = json.loads((model_dir / "config.json").read_text())
    return str(config.get("e5ray_testmodel", {}).get("graph", "nodes"))


def place_model(
    workdir: Path,
    *,
    shape: str | None,
    arch: str | None,
    graph: str = "export",
    model_path: str | None = None,
    seed: int = 0,
) -> tuple[str, str]:
    """Put the model in `workdir`; returns the (shape name, arch) the benchmark must be run with.

    With `model_path`, a shape matching the model's compute is looked up in SHAPES, or
    registered there under ``model:<dirname>`` so the ceiling uses the model's own size.
    """
    from e5ray.testing_export import write_model

    workdir.mkdir(parents=True, exist_ok=True)
    if model_path is not None:
        source = Path(model_path).resolve()
        config_path = source / "config.json"
        if not config_path.is_file():
            raise ValueError(f"--model-path {model_path}: no config.json there (an exported model directory)")
        config = json.loads(config_path.read_text())
        found = shape_of_config(config)
        arch_found = ARCH_OF_MODEL_TYPE[config["model_type"]]
        if arch and arch != arch_found:
            raise ValueError(f"--arch {arch} but {config_path} says model_type {config['model_type']!r}")
        key = shape_key_for(found)
        if shape and shape != key:
            raise ValueError(f"--shape {shape} does not match {config_path} ({found}); leave --shape out")
        if key is None:
            key = f"model:{source.name}"
            SHAPES[key] = found
        wanted = f"path:{source}"
        arch = arch_found
    else:
        key = shape or "e5-small"
        if key not in SHAPES:
            raise ValueError(f"unknown shape {key!r}; valid: {', '.join(SHAPES)}")
        arch = arch or DEFAULT_ARCH.get(key, "xlmr")
        wanted = graph
    model_dir = workdir / f"model-{arch}-{key}"
    if model_dir.is_symlink() or (model_dir / "config.json").is_file():
        placed = _placed_graph(model_dir)
        if placed != wanted:
            raise ValueError(f"{model_dir} already holds a model ({placed}), not {wanted}; use another --workdir")
        return key, arch
    if model_path is not None:
        model_dir.symlink_to(Path(model_path).resolve(), target_is_directory=True)
    else:
        write_model(model_dir, graph=graph, arch=arch, shape=key, seed=seed)
    return key, arch


def fusion_counts(
    shape: str, arch: str | None = None, graph: str = "export", use_gpu: bool = False, full_vocab: bool = False
) -> dict[str, Any]:
    """Node counts before and after onnxruntime's transformer optimiser for a random model.

    Unless `full_vocab`, the word table is cut to what the tokenizer needs: it changes
    no node, only the file size (the e5-large table alone is 1 GB).
    """
    import tempfile
    from dataclasses import asdict, replace

    from e5ray.fusion import optimize_encoder
    from e5ray.testing_export import write_model

    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; valid: {', '.join(SHAPES)}")
    arch = arch or DEFAULT_ARCH.get(shape, "xlmr")
    encoder = SHAPES[shape] if full_vocab else replace(SHAPES[shape], vocab_size=SHAPES["tiny"].vocab_size)
    with tempfile.TemporaryDirectory(prefix="e5ray-fusion-") as tmp:
        write_model(Path(tmp), graph=graph, arch=arch, shape=encoder)
        _, report = optimize_encoder(Path(tmp) / "model.onnx", use_gpu=use_gpu)
    return {"shape": shape, "arch": arch, "graph": graph, "use_gpu": use_gpu, **asdict(report)}
