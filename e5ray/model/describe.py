"""The embedding space of a model's files, read from the files without loading the model.

The driver plans a run from this (no ONNX session, no tokenizer); every worker's
embedder derives its own space the same way and must arrive at the same fingerprint.
Pooling and normalisation are taken from the pooling mode chosen (`e5ray.model.pooling`: the
paper's mean by default); the long-text mode and its stride from `e5ray.model.windows`.
"""

from __future__ import annotations

import os
from typing import Any

from e5ray.model.catalog import DEFAULT_MODEL
from e5ray.model.pooling import E5_POOLING, POOLINGS, check_pooling
from e5ray.model.resolve import ModelFiles, model_sha256, read_json_file, resolve_model
from e5ray.model.space import EmbeddingSpace, Prefix, prefix_text
from e5ray.model.windows import check_long_text, default_stride


def effective_max_length(files: ModelFiles, config: dict[str, Any], requested: int) -> int:
    """`requested`, capped by what the model's position table (`config`: its config.json)
    and tokenizer allow."""
    limit = requested
    positions = config.get("max_position_embeddings")
    if positions:
        # RoBERTa/XLM-R offset positions by pad_id + 1 (514 rows hold 512 tokens).
        pad_id = int(config.get("pad_token_id", 1) or 0)
        offset = pad_id + 1 if config.get("model_type") in ("xlm-roberta", "roberta") else 0
        limit = min(limit, int(positions) - offset)
    if files.tokenizer_config_path is not None:
        tk_max = read_json_file(files.tokenizer_config_path).get("model_max_length")
        if isinstance(tk_max, int) and 0 < tk_max < 1_000_000:  # HF stores 1e30 for "unset"
            limit = min(limit, tk_max)
    return limit


def describe_space(
    model: str = DEFAULT_MODEL,
    model_path: str | os.PathLike[str] | None = None,
    max_length: int = 512,
    precision: str = "fp32",
    prefix: Prefix = "passage",
    cache_dir: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    pooling: str = E5_POOLING,
    long_text: str = "truncate",
    stride: int | None = None,
) -> EmbeddingSpace:
    """The space an E5Embedder with these settings embeds into, without loading the model."""
    prefix_text(prefix)  # validates
    files = resolve_model(model, model_path, cache_dir, storage_options)
    return space_of(model, files, max_length, precision, prefix, pooling=pooling, long_text=long_text, stride=stride)


def space_of(
    model: str,
    files: ModelFiles,
    max_length: int,
    precision: str,
    prefix: Prefix = "passage",
    config: dict[str, Any] | None = None,
    pooling: str = E5_POOLING,
    long_text: str = "truncate",
    stride: int | None = None,
) -> EmbeddingSpace:
    """The embedding space of `files` used with these settings (read from the files, not the
    session). `config`: the model's config.json when the caller has parsed it already.
    The stride belongs to the space only when long texts are cut into windows."""
    if config is None:
        config = read_json_file(files.config_path)
    length = effective_max_length(files, config, max_length)
    windowed = check_long_text(long_text) != "truncate"
    return EmbeddingSpace(
        model=model,
        model_sha256=model_sha256(files),
        dim=int(config["hidden_size"]),
        max_length=length,
        pooling=check_pooling(pooling),
        normalized=POOLINGS[pooling].normalized,
        precision=precision,
        prefix=prefix,
        long_text=long_text,
        stride=(default_stride(length) if stride is None else stride) if windowed else 0,
    )
