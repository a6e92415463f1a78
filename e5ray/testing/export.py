"""Random-weight encoders with the graph of a real Hugging Face / Optimum ONNX export.

`write_export_model` writes the same network, weights and tokenizer as
`e5ray.testing.models.write_test_model` (same seed, same numbers), but laid out node for node
the way `torch.onnx.export` (TorchScript exporter, opset 14, dynamic batch and sequence
axes) writes `BertModel` and `XLMRobertaModel` from transformers 4.x with eager
attention: the exporter that made the published E5 exports (Xenova/multilingual-e5-*,
Qdrant/multilingual-e5-large-onnx, intfloat's e5-*-v2 via Optimum). That means

* LayerNorm decomposed (ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add);
* linear layers as MatMul + Add(bias, ...), weights stored (in, out);
* head split and merge shapes computed at run time (Shape, Gather, Unsqueeze, Concat);
* keys transposed once with perm (0, 2, 3, 1); scores Div by sqrt(head_dim), then Add of
  the extended mask ``(1 - mask[:, None, None, :]) * finfo(float32).min``;
* erf GELU as Div, Erf, Add, Mul, Mul;
* BERT: positions sliced from a constant ``position_ids`` buffer; XLM-R: positions
  ``cumsum(ids != pad) * (ids != pad) + pad`` and token types expanded from a buffer.

Why it matters: onnxruntime's transformer optimiser fuses attention by matching exactly
this pattern. On the node-by-node graph of `e5ray.testing.models` attention did not fuse, so
benchmarks on it misstate what users of the real exports get. `tests/test_export_shaped.py`
holds the op sequence to a live torch export when torch and transformers are installed.

Needs the optional ``onnx`` package (the ``test``/``bench`` extras); no torch at run time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.testing.extras import missing_extra

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # an optional extra: say which one to install
    raise missing_extra("onnx", "e5ray.testing.export (writing export-shaped models)") from exc

from e5ray.testing.archs import ARCHS, Arch
from e5ray.testing.models import save_model_dir
from e5ray.testing.shapes import EncoderShape, resolve_shape

__all__ = ["EXPORT_OPSET", "GRAPHS", "export_graph", "write_export_model", "write_model"]

# Optimum's default for BERT-like encoders; decomposed LayerNorm is an opset <= 16 trait.
EXPORT_OPSET = 14
EXPORT_IR_VERSION = 7  # what torch writes for opset 14
# onnxruntime's optimiser checks the producer to pick its fusion rules.
PRODUCER = ("pytorch", "2.0.1")
_FLOAT_MIN = float(np.finfo(np.float32).min)
# Graph layouts a benchmark or test may ask for.
GRAPHS = ("export", "nodes")


class _Torchish:
    """Appends nodes named the way the TorchScript exporter names them (scope/Op_k)."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._counts: dict[str, int] = {}

    def _name(self, scope: str, op_type: str) -> str:
        key = f"{scope}/{op_type}"
        k = self._counts.get(key, 0)
        self._counts[key] = k + 1
        return key if k == 0 else f"{key}_{k}"

    def op(self, scope: str, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = self._name(scope, op_type)
        output = out or f"{name}_output_0"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=name, **attrs))
        return output

    def const(self, scope: str, value: Any, dtype: Any) -> str:
        tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype))
        return self.op(scope, "Constant", value=tensor)


def _layer_norm(g: _Torchish, scope: str, x: str, prefix: str, eps: float) -> str:
    s = f"{scope}/LayerNorm"
    mean = g.op(s, "ReduceMean", x, axes=[-1])
    centred = g.op(s, "Sub", x, mean)
    var = g.op(s, "ReduceMean", g.op(s, "Pow", centred, g.const(s, 2.0, np.float32)), axes=[-1])
    std = g.op(s, "Sqrt", g.op(s, "Add", var, g.const(s, eps, np.float32)))
    scaled = g.op(s, "Mul", g.op(s, "Div", centred, std), f"{prefix}.weight")
    return g.op(s, "Add", scaled, f"{prefix}.bias")


def _linear(g: _Torchish, scope: str, x: str, prefix: str) -> str:
    return g.op(scope, "Add", f"{prefix}.bias", g.op(scope, "MatMul", x, f"{prefix}.weight"))


def _dims01(g: _Torchish, scope: str, x: str) -> tuple[str, str]:
    """x.size(0), x.size(1) as 1-element tensors, as torch traces `x.size()[:-1]`."""
    dims = []
    for axis in (0, 1):
        gathered = g.op(scope, "Gather", g.op(scope, "Shape", x), g.const(scope, axis, np.int64), axis=0)
        dims.append(gathered)
    return (
        g.op(scope, "Unsqueeze", dims[0], g.const(scope, [0], np.int64)),
        g.op(scope, "Unsqueeze", dims[1], g.const(scope, [0], np.int64)),
    )


def _split_heads(g: _Torchish, scope: str, x: str, heads: int, head_dim: int) -> str:
    batch, seq = _dims01(g, scope, x)
    shape = g.op(
        scope, "Concat", batch, seq, g.const(scope, [heads], np.int64), g.const(scope, [head_dim], np.int64), axis=0
    )
    return g.op(scope, "Reshape", x, shape, allowzero=0)


def _embeddings(g: _Torchish, arch: Arch, shape: EncoderShape) -> str:
    spec = ARCHS[arch]
    positions_rows = shape.max_positions + spec.position_offset
    s = "/embeddings"
    if arch == "bert":
        seq = g.op(s, "Gather", g.op(s, "Shape", "input_ids"), g.const(s, 1, np.int64), axis=0)
        buffer = g.const(s, np.arange(positions_rows, dtype=np.int64)[None, :], np.int64)
        # Slice(buffer, starts=[0], ends=[seq], axes=[1], steps=[1]), constants in the exporter's order.
        axes, starts = g.const(s, [1], np.int64), g.const(s, [0], np.int64)
        end = g.op(s, "Unsqueeze", seq, g.const(s, [0], np.int64))
        positions = g.op(s, "Slice", buffer, starts, end, axes, g.const(s, [1], np.int64))
        words = g.op(f"{s}/word_embeddings", "Gather", "embeddings.word_embeddings.weight", "input_ids")
        types = g.op(
            f"{s}/token_type_embeddings", "Gather", "embeddings.token_type_embeddings.weight", "token_type_ids"
        )
        x = g.op(s, "Add", words, types)
        pos = g.op(f"{s}/position_embeddings", "Gather", "embeddings.position_embeddings.weight", positions)
        x = g.op(s, "Add", x, pos)
        return _layer_norm(g, s, x, "embeddings.LayerNorm", spec.layer_norm_eps)

    # XLM-R: token_type_ids default to a zeros buffer expanded to (batch, seq).
    batch = g.op("", "Gather", g.op("", "Shape", "input_ids"), g.const("", 0, np.int64), axis=0)
    seq = g.op("", "Gather", g.op("", "Shape", "input_ids"), g.const("", 1, np.int64), axis=0)
    buffer = g.const("", np.zeros((1, positions_rows), dtype=np.int64), np.int64)
    step, start, unsq_axis = g.const("", [1], np.int64), g.const("", [0], np.int64), g.const("", [0], np.int64)
    sliced = g.op("", "Slice", buffer, start, g.op("", "Unsqueeze", seq, unsq_axis), step, g.const("", [1], np.int64))
    target = g.op(
        "",
        "Concat",
        g.op("", "Unsqueeze", batch, g.const("", [0], np.int64)),
        g.op("", "Unsqueeze", seq, g.const("", [0], np.int64)),
        axis=0,
    )
    target = g.op("", "Reshape", target, g.const("", [-1], np.int64), allowzero=0)
    ones = g.op(
        "",
        "ConstantOfShape",
        g.op("", "Shape", target),
        value=numpy_helper.from_array(np.array([1], dtype=np.int64)),
    )
    is_minus_one = g.op("", "Equal", target, g.op("", "Mul", ones, g.const("", -1, np.int64)))
    token_types = g.op("", "Expand", sliced, g.op("", "Where", is_minus_one, ones, target))
    # create_position_ids_from_input_ids: cumsum over non-pad tokens (int32), times the mask, + pad id.
    not_pad = g.op(s, "Not", g.op(s, "Equal", "input_ids", g.const(s, spec.pad_id, np.int64)))
    not_pad = g.op(s, "Cast", not_pad, to=TensorProto.INT32)
    cumsum = g.op(s, "CumSum", not_pad, g.const(s, 1, np.int64))
    positions = g.op(s, "Cast", g.op(s, "Mul", cumsum, not_pad), to=TensorProto.INT64)
    positions = g.op(s, "Add", positions, g.const(s, spec.pad_id, np.int64))
    words = g.op(f"{s}/word_embeddings", "Gather", "embeddings.word_embeddings.weight", "input_ids")
    types = g.op(f"{s}/token_type_embeddings", "Gather", "embeddings.token_type_embeddings.weight", token_types)
    x = g.op(s, "Add", words, types)
    pos = g.op(f"{s}/position_embeddings", "Gather", "embeddings.position_embeddings.weight", positions)
    x = g.op(s, "Add", x, pos)
    return _layer_norm(g, s, x, "embeddings.LayerNorm", spec.layer_norm_eps)


def _extended_mask(g: _Torchish) -> str:
    mask = g.op("", "Unsqueeze", "attention_mask", g.const("", [1], np.int64))
    mask = g.op("", "Unsqueeze", mask, g.const("", [2], np.int64))
    mask = g.op("", "Cast", mask, to=TensorProto.FLOAT)
    inverted = g.op("", "Sub", g.const("", 1.0, np.float32), mask)
    return g.op("", "Mul", inverted, g.const("", _FLOAT_MIN, np.float32))


def _layer(g: _Torchish, layer: int, x: str, mask: str, shape: EncoderShape, eps: float, last: bool) -> str:
    heads, head_dim = shape.heads, shape.hidden // shape.heads
    p, s = f"encoder.layer.{layer}.", f"/encoder/layer.{layer}"
    att = f"{s}/attention/self"
    q = _linear(g, f"{att}/query", x, p + "attention.self.query")
    k = _split_heads(g, att, _linear(g, f"{att}/key", x, p + "attention.self.key"), heads, head_dim)
    v = _split_heads(g, att, _linear(g, f"{att}/value", x, p + "attention.self.value"), heads, head_dim)
    v = g.op(att, "Transpose", v, perm=[0, 2, 1, 3])
    q = g.op(att, "Transpose", _split_heads(g, att, q, heads, head_dim), perm=[0, 2, 1, 3])
    k = g.op(att, "Transpose", k, perm=[0, 2, 3, 1])
    scores = g.op(att, "Div", g.op(att, "MatMul", q, k), g.const(att, math.sqrt(head_dim), np.float32))
    probs = g.op(att, "Softmax", g.op(att, "Add", scores, mask), axis=-1)
    context = g.op(att, "Transpose", g.op(att, "MatMul", probs, v), perm=[0, 2, 1, 3])
    batch, seq = _dims01(g, att, context)
    merged = g.op(att, "Concat", batch, seq, g.const(att, [shape.hidden], np.int64), axis=0)
    context = g.op(att, "Reshape", context, merged, allowzero=0)
    out = f"{s}/attention/output"
    attn = _linear(g, f"{out}/dense", context, p + "attention.output.dense")
    x = _layer_norm(g, out, g.op(out, "Add", attn, x), p + "attention.output.LayerNorm", eps)
    inter = f"{s}/intermediate"
    inner = _linear(g, f"{inter}/dense", x, p + "intermediate.dense")
    act = f"{inter}/intermediate_act_fn"
    erf = g.op(act, "Erf", g.op(act, "Div", inner, g.const(act, math.sqrt(2.0), np.float32)))
    gelu = g.op(
        act,
        "Mul",
        g.op(act, "Mul", inner, g.op(act, "Add", erf, g.const(act, 1.0, np.float32))),
        g.const(act, 0.5, np.float32),
    )
    ffn = _linear(g, f"{s}/output/dense", gelu, p + "output.dense")
    y = _layer_norm(g, f"{s}/output", g.op(f"{s}/output", "Add", ffn, x), p + "output.LayerNorm", eps)
    if last:  # the exporter names the graph output after the last node's output
        g.nodes[-1].output[0] = "last_hidden_state"
        return "last_hidden_state"
    return y


def export_graph(arch: Arch, shape: str | EncoderShape) -> onnx.GraphProto:
    """The export-shaped network without its weight initializers (names as in `weight_specs`)."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    encoder = resolve_shape(shape)
    eps = ARCHS[arch].layer_norm_eps
    g = _Torchish()
    x = _embeddings(g, arch, encoder)
    mask = _extended_mask(g)
    for layer in range(encoder.layers):
        x = _layer(g, layer, x, mask, encoder, eps, last=layer == encoder.layers - 1)
    dims = ["batch_size", "sequence_length"]
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    return helper.make_graph(
        g.nodes,
        "main_graph",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in input_names],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, encoder.hidden])],
    )


def write_export_model(
    directory: str | Path,
    *,
    arch: Arch = "bert",
    shape: str | EncoderShape = "tiny",
    words: Sequence[str] | None = None,
    seed: int = 0,
    onnx_name: str = "model.onnx",
    external_data: bool | None = None,
) -> Path:
    """Write an export-shaped random-weight encoder and its tokenizer into `directory`.

    Same files, weights (for the same seed) and tokenizer as `write_test_model`; only the
    graph differs. `external_data=None` splits the weights into `<onnx_name>_data` above
    ~1.5 GiB (e5-large), as the real e5-large export is split. Returns the directory.
    """
    return save_model_dir(
        directory,
        lambda encoder: export_graph(arch, encoder),
        arch=arch,
        shape=shape,
        words=words,
        seed=seed,
        onnx_name=onnx_name,
        external_data=external_data,
        opset=EXPORT_OPSET,
        ir_version=EXPORT_IR_VERSION,
        producer=PRODUCER,
        graph_label="export",
    )


def write_model(directory: str | Path, *, graph: str = "export", **kwargs: Any) -> Path:
    """`write_export_model` (graph='export') or `write_test_model` (graph='nodes')."""
    if graph == "export":
        return write_export_model(directory, **kwargs)
    if graph == "nodes":
        from e5ray.testing.models import write_test_model

        return write_test_model(directory, **kwargs)
    raise ValueError(f"unknown graph {graph!r}; valid: {', '.join(GRAPHS)}")
