"""Random weights of a synthetic encoder: their names, shapes, order and distribution.

Names follow the HF module names, and linear weights are stored (in, out), i.e. already
transposed for MatMul, as torch.onnx exports them. The order of `weight_specs` fixes what a
seed produces: reordering it changes every test model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np

from e5ray.testing.archs import ARCHS, Arch
from e5ray.testing.shapes import EncoderShape

# Standard BERT initializer range; small enough that attention and FFN only perturb
# the residual stream, so the output at a position is dominated by its own token.
INIT_STD = 0.02
# Word embeddings are much larger than position/type embeddings so different tokens give
# clearly different outputs and mean pooling differs a lot from first-token pooling.
WORD_EMBEDDING_STD = 0.5


@dataclass(frozen=True)
class WeightSpec:
    name: str
    dims: tuple[int, ...]
    kind: Literal["word", "normal", "ones", "zeros"]
    # nn.Embedding(padding_idx=...) zero-initialises the pad row, as HF does.
    zero_row: int | None = None


def weight_specs(arch: Arch, shape: EncoderShape) -> Iterator[WeightSpec]:
    """Initializers in generation order (the order fixes what a seed produces).

    Names follow the HF module names; linear weights are stored (in, out), i.e. already
    transposed for MatMul, as torch.onnx exports them.
    """
    spec = ARCHS[arch]
    h, i = shape.hidden, shape.intermediate
    yield WeightSpec("embeddings.word_embeddings.weight", (shape.vocab_size, h), "word", spec.pad_id)
    positions = shape.max_positions + spec.position_offset
    # Only RoBERTa's position table has a padding_idx.
    yield WeightSpec(
        "embeddings.position_embeddings.weight", (positions, h), "normal", spec.pad_id if spec.position_offset else None
    )
    yield WeightSpec("embeddings.token_type_embeddings.weight", (spec.type_vocab_size, h), "normal")
    yield WeightSpec("embeddings.LayerNorm.weight", (h,), "ones")
    yield WeightSpec("embeddings.LayerNorm.bias", (h,), "zeros")
    for layer in range(shape.layers):
        p = f"encoder.layer.{layer}."
        for proj in ("query", "key", "value"):
            yield WeightSpec(f"{p}attention.self.{proj}.weight", (h, h), "normal")
            yield WeightSpec(f"{p}attention.self.{proj}.bias", (h,), "normal")
        yield WeightSpec(f"{p}attention.output.dense.weight", (h, h), "normal")
        yield WeightSpec(f"{p}attention.output.dense.bias", (h,), "normal")
        yield WeightSpec(f"{p}attention.output.LayerNorm.weight", (h,), "ones")
        yield WeightSpec(f"{p}attention.output.LayerNorm.bias", (h,), "zeros")
        yield WeightSpec(f"{p}intermediate.dense.weight", (h, i), "normal")
        yield WeightSpec(f"{p}intermediate.dense.bias", (i,), "normal")
        yield WeightSpec(f"{p}output.dense.weight", (i, h), "normal")
        yield WeightSpec(f"{p}output.dense.bias", (h,), "normal")
        yield WeightSpec(f"{p}output.LayerNorm.weight", (h,), "ones")
        yield WeightSpec(f"{p}output.LayerNorm.bias", (h,), "zeros")


def weight_bytes(arch: Arch, shape: EncoderShape) -> int:
    return sum(4 * math.prod(w.dims) for w in weight_specs(arch, shape))


def generate_weight(rng: np.random.Generator, weight: WeightSpec) -> np.ndarray:
    if weight.kind == "ones":
        return np.ones(weight.dims, np.float32)
    if weight.kind == "zeros":
        return np.zeros(weight.dims, np.float32)
    # float32 straight from the generator: the e5-small word table is 96M values.
    array = rng.standard_normal(weight.dims, dtype=np.float32)
    array *= WORD_EMBEDDING_STD if weight.kind == "word" else INIT_STD
    if weight.zero_row is not None:
        array[weight.zero_row] = 0.0
    return array
