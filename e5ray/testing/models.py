"""`write_test_model`: a random-weight E5-like encoder as ONNX, laid out like a real export.

The directory holds `model.onnx` [+ `model.onnx_data`], `tokenizer.json`,
`tokenizer_config.json`, `special_tokens_map.json` and `config.json`, as a real exported
model directory does, so every code path that loads a real model loads this one. The
graph is built node by node (post-LN transformer, exact-erf GELU, HF position ids);
weights are streamed to the external data file tensor by tensor so that e5-large (2 GiB)
never sits in memory twice.

Needs the optional ``onnx`` package: ``pip install "e5ray[test]"`` (or ``"e5ray[bench]"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.testing.extras import missing_extra

try:
    import onnx
    from onnx import TensorProto, helper, numpy_helper
except ImportError as exc:  # an optional extra: say which one to install
    raise missing_extra("onnx", "e5ray.testing.models (writing test models)") from exc

from e5ray.testing.archs import ARCHS, MASK_VALUE, Arch
from e5ray.testing.shapes import EncoderShape, resolve_shape
from e5ray.testing.tokenizer import build_tokenizer, full_vocab, tokenizer_configs
from e5ray.testing.weights import INIT_STD, WeightSpec, generate_weight, weight_bytes, weight_specs
from e5ray.testing.words import sample_words

# Above this many weight bytes the model goes to `<onnx_name>_data`: protobuf cannot
# serialise messages over 2 GiB, and the real e5-large export is split the same way.
EXTERNAL_DATA_THRESHOLD = int(1.5 * 2**30)
# Offsets in the external data file are page aligned so onnxruntime can mmap them.
_EXTERNAL_ALIGNMENT = 4096
OPSET = 17
# IR 8 is what opset 17 shipped with; keeps the files loadable by older onnxruntime.
IR_VERSION = 8


class _GraphBuilder:
    """Collects nodes and initializers, handing out unique tensor names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self._count = 0

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        self._count += 1
        output = out or f"{op_type.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], name=f"{op_type}_{self._count}", **attrs))
        return output

    def const(self, name: str, value: Any, dtype: Any) -> str:
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name=f"const.{name}"))
        return f"const.{name}"


def _build_graph(arch: Arch, shape: EncoderShape) -> onnx.GraphProto:
    """The network, with its small constants but without the weight initializers."""
    spec = ARCHS[arch]
    g = _GraphBuilder()
    eps = spec.layer_norm_eps
    heads, head_dim = shape.heads, shape.hidden // shape.heads

    def layer_norm(x: str, prefix: str) -> str:
        return g.op("LayerNormalization", x, f"{prefix}.weight", f"{prefix}.bias", axis=-1, epsilon=eps)

    def linear(x: str, prefix: str) -> str:
        return g.op("Add", g.op("MatMul", x, f"{prefix}.weight"), f"{prefix}.bias")

    # Embeddings.
    words = g.op("Gather", "embeddings.word_embeddings.weight", "input_ids", axis=0)
    if arch == "bert":
        seq_len = g.op("Gather", g.op("Shape", "input_ids"), g.const("one_idx", 1, np.int64), axis=0)
        positions = g.op("Range", g.const("zero", 0, np.int64), seq_len, g.const("one", 1, np.int64))
        types = g.op("Gather", "embeddings.token_type_embeddings.weight", "token_type_ids", axis=0)
    else:
        # HF create_position_ids_from_input_ids: cumsum over non-pad tokens, offset by pad id.
        pad = g.const("pad_id", spec.pad_id, np.int64)
        not_pad = g.op("Cast", g.op("Not", g.op("Equal", "input_ids", pad)), to=TensorProto.INT64)
        cumsum = g.op("CumSum", not_pad, g.const("seq_axis", 1, np.int64))
        positions = g.op("Add", g.op("Mul", cumsum, not_pad), pad)
        # No token_type_ids input: the single type row is added everywhere.
        types = g.op("Gather", "embeddings.token_type_embeddings.weight", g.const("zero", 0, np.int64), axis=0)
    pos_emb = g.op("Gather", "embeddings.position_embeddings.weight", positions, axis=0)
    x = layer_norm(g.op("Add", g.op("Add", words, pos_emb), types), "embeddings.LayerNorm")

    # Additive attention mask (batch, 1, 1, keys).
    mask = g.op("Cast", "attention_mask", to=TensorProto.FLOAT)
    mask = g.op("Unsqueeze", mask, g.const("mask_axes", [1, 2], np.int64))
    one_f = g.const("one_f", 1.0, np.float32)
    mask = g.op("Mul", g.op("Sub", one_f, mask), g.const("mask_value", MASK_VALUE, np.float32))

    split_heads = g.const("split_heads", [0, 0, heads, head_dim], np.int64)
    merge_heads = g.const("merge_heads", [0, 0, shape.hidden], np.int64)
    scale = g.const("sqrt_head_dim", math.sqrt(head_dim), np.float32)
    sqrt2 = g.const("sqrt2", math.sqrt(2.0), np.float32)
    half = g.const("half", 0.5, np.float32)
    for layer in range(shape.layers):
        p = f"encoder.layer.{layer}."
        q = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.query"), split_heads), perm=[0, 2, 1, 3])
        k = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.key"), split_heads), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", linear(x, p + "attention.self.value"), split_heads), perm=[0, 2, 1, 3])
        scores = g.op("Add", g.op("Div", g.op("MatMul", q, k), scale), mask)
        context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
        context = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), merge_heads)
        attn = linear(context, p + "attention.output.dense")
        x = layer_norm(g.op("Add", attn, x), p + "attention.output.LayerNorm")
        # Exact (erf) GELU, as BERT's "gelu".
        inner = linear(x, p + "intermediate.dense")
        gelu = g.op("Mul", g.op("Mul", inner, half), g.op("Add", g.op("Erf", g.op("Div", inner, sqrt2)), one_f))
        ffn = linear(gelu, p + "output.dense")
        x = layer_norm(g.op("Add", ffn, x), p + "output.LayerNorm")
    g.op("Identity", x, out="last_hidden_state")

    dims = ["batch_size", "sequence_length"]
    input_names = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    return helper.make_graph(
        g.nodes,
        f"e5ray_test_{arch}",
        [helper.make_tensor_value_info(name, TensorProto.INT64, dims) for name in input_names],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, [*dims, shape.hidden])],
        initializer=g.initializers,
    )


def _add_weight(graph: onnx.GraphProto, weight: WeightSpec) -> TensorProto:
    """Append an empty float initializer in place (extend/from_array would copy the bytes)."""
    tensor = graph.initializer.add()
    tensor.name = weight.name
    tensor.data_type = TensorProto.FLOAT
    tensor.dims.extend(weight.dims)
    return tensor


def _set_external(tensor: TensorProto, location: str, offset: int, length: int) -> None:
    # onnx.external_data_helper.set_external_data insists on raw_data being present first.
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _model_config(arch: Arch, shape: EncoderShape, seed: int) -> dict[str, Any]:
    spec = ARCHS[arch]
    config: dict[str, Any] = {
        "architectures": ["BertModel" if arch == "bert" else "XLMRobertaModel"],
        "model_type": spec.model_type,
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": shape.hidden,
        "initializer_range": INIT_STD,
        "intermediate_size": shape.intermediate,
        "layer_norm_eps": spec.layer_norm_eps,
        "max_position_embeddings": shape.max_positions + spec.position_offset,
        "num_attention_heads": shape.heads,
        "num_hidden_layers": shape.layers,
        "pad_token_id": spec.pad_id,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
        "type_vocab_size": spec.type_vocab_size,
        "vocab_size": shape.vocab_size,
        # Provenance, so a directory can be recognised as synthetic.
        "e5ray_testmodel": {"arch": arch, "seed": seed, "shape": asdict(shape)},
    }
    if arch == "xlmr":
        config.update(bos_token_id=0, eos_token_id=2)
    return config


def write_test_model(
    directory: str | Path,
    *,
    arch: Arch = "bert",
    shape: str | EncoderShape = "tiny",
    words: Sequence[str] | None = None,
    seed: int = 0,
    onnx_name: str = "model.onnx",
    external_data: bool | None = None,
) -> Path:
    """Write a random-weight E5-like encoder and its tokenizer into `directory`.

    `external_data=None` stores the weights in `<onnx_name>_data` only when they exceed
    ~1.5 GiB (e5-large); True/False forces it. Returns the directory.
    """
    return save_model_dir(
        directory,
        lambda encoder: _build_graph(arch, encoder),
        arch=arch,
        shape=shape,
        words=words,
        seed=seed,
        onnx_name=onnx_name,
        external_data=external_data,
        opset=OPSET,
        ir_version=IR_VERSION,
        producer=("e5ray.testing", ""),
        graph_label="nodes",
    )


def save_model_dir(
    directory: str | Path,
    build_graph: Callable[[EncoderShape], onnx.GraphProto],
    *,
    arch: Arch,
    shape: str | EncoderShape,
    words: Sequence[str] | None,
    seed: int,
    onnx_name: str,
    external_data: bool | None,
    opset: int,
    ir_version: int,
    producer: tuple[str, str],
    graph_label: str,
) -> Path:
    """A model directory from a graph without weights: the seed's weights (the same for
    every graph layout), the ONNX file checked, the tokenizer and the config files."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    encoder = resolve_shape(shape)
    word_list = sample_words() if words is None else list(words)
    vocab = full_vocab(arch, word_list, encoder.vocab_size)  # validates before any heavy work

    root = Path(directory)
    onnx_path = root / onnx_name
    onnx_path.parent.mkdir(parents=True, exist_ok=True)
    data_name = onnx_path.name + "_data"
    data_path = onnx_path.parent / data_name
    if external_data is None:
        external_data = weight_bytes(arch, encoder) > EXTERNAL_DATA_THRESHOLD

    model = helper.make_model(
        build_graph(encoder),
        opset_imports=[helper.make_opsetid("", opset)],
        producer_name=producer[0],
        producer_version=producer[1],
        ir_version=ir_version,
    )
    rng = np.random.default_rng(seed)
    if external_data:
        # Stream each tensor to disk as it is generated: the in-memory proto stays tiny
        # and peak memory is one tensor, not the whole (possibly >2 GiB) model.
        with open(data_path, "wb") as data_file:
            for weight in weight_specs(arch, encoder):
                array = generate_weight(rng, weight).astype("<f4", copy=False)
                offset = data_file.tell()
                offset += -offset % _EXTERNAL_ALIGNMENT
                data_file.seek(offset)  # the gap reads back as zeros
                array.tofile(data_file)
                _set_external(_add_weight(model.graph, weight), data_name, offset, array.nbytes)
                del array
    else:
        data_path.unlink(missing_ok=True)  # a stale split from an earlier write would mislead
        for weight in weight_specs(arch, encoder):
            _add_weight(model.graph, weight).raw_data = generate_weight(rng, weight).astype("<f4", copy=False).tobytes()
    # Serialised directly: tensors that are already external need no onnx.save rewriting.
    onnx_path.write_bytes(model.SerializeToString())
    del model
    # The path form of the checker also verifies external data files and works past 2 GiB.
    onnx.checker.check_model(str(onnx_path))

    tokenizer = build_tokenizer(arch, vocab)
    tokenizer.save(str(root / "tokenizer.json"))
    tokenizer_config, tokens_map = tokenizer_configs(arch, encoder.vocab_size)
    config = _model_config(arch, encoder, seed)
    config["e5ray_testmodel"]["graph"] = graph_label
    for filename, content in (
        ("tokenizer_config.json", tokenizer_config),
        ("special_tokens_map.json", tokens_map),
        ("config.json", config),
    ):
        (root / filename).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return root
