"""ONNX graph edits: append E5 pooling (masked mean, then L2) to an encoder.

Used for the GPU model: pooling on the device means copying (batch, dim) floats back
to the host instead of (batch, seq, dim), and frees the CPU for tokenising. It computes
exactly what `e5ray.model.pooling.pool` computes for the same method, mean or legacy cls
(tests hold the two together). The method is written into the model's metadata
(POOLING_METADATA) so that a pooled file is never used for the other method.
Needs the onnx package (the gpu and quant extras).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from e5ray.model.pooling import POOLED_OUTPUT, check_pooling

POOLING_METADATA = "e5ray.model.pooling"


def add_e5_pooling(model: onnx.ModelProto, hidden: str = "last_hidden_state", pooling: str = "mean") -> onnx.ModelProto:
    """Return `model` with one output, POOLED_OUTPUT (batch, dim) float32, replacing `hidden`.

    `pooling`: 'mean' (masked mean, the paper's) or 'cls' (first position), then L2.
    """
    check_pooling(pooling)
    graph = model.graph
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < 13:
        raise ValueError(f"E5 pooling head needs ONNX opset >= 13 (axes as inputs); this model has opset {opset}")
    if hidden not in {o.name for o in graph.output}:
        raise ValueError(f"no output {hidden!r}; outputs: {[o.name for o in graph.output]}")

    def name(suffix: str) -> str:
        return f"e5pool.{suffix}"

    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array([1], dtype=np.int64), name("axis1")),
            numpy_helper.from_array(np.array([2], dtype=np.int64), name("axis2")),
            numpy_helper.from_array(np.array(1e-12, dtype=np.float32), name("eps")),
            numpy_helper.from_array(np.array(0, dtype=np.int64), name("first")),
        ]
    )
    if pooling == "cls":
        # A scalar index drops the sequence axis: (batch, seq, dim) -> (batch, dim).
        pooled = [
            helper.make_node("Gather", [hidden, name("first")], [name("cls")], axis=1),
            helper.make_node("Cast", [name("cls")], [name("pooled")], to=TensorProto.FLOAT),
        ]
    else:
        pooled = [
            helper.make_node("Cast", ["attention_mask"], [name("mask")], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", [name("mask"), name("axis2")], [name("mask3")]),
            helper.make_node("Cast", [hidden], [name("hidden")], to=TensorProto.FLOAT),
            helper.make_node("Mul", [name("hidden"), name("mask3")], [name("masked")]),
            helper.make_node("ReduceSum", [name("masked"), name("axis1")], [name("sum")], keepdims=0),
            helper.make_node("ReduceSum", [name("mask3"), name("axis1")], [name("count")], keepdims=0),
            helper.make_node("Div", [name("sum"), name("count")], [name("pooled")]),
        ]
    nodes = [
        *pooled,
        helper.make_node("Mul", [name("pooled"), name("pooled")], [name("sq")]),
        helper.make_node("ReduceSum", [name("sq"), name("axis1")], [name("sqsum")], keepdims=1),
        helper.make_node("Sqrt", [name("sqsum")], [name("norm")]),
        helper.make_node("Max", [name("norm"), name("eps")], [name("safe")]),
        helper.make_node("Div", [name("pooled"), name("safe")], [POOLED_OUTPUT]),
    ]
    graph.node.extend(nodes)
    dim = None
    for out in graph.output:
        if out.name == hidden:
            dims = out.type.tensor_type.shape.dim
            dim = dims[-1].dim_value if len(dims) == 3 and dims[-1].dim_value else None
    pooled_output = helper.make_tensor_value_info(POOLED_OUTPUT, TensorProto.FLOAT, ["batch", dim or "dim"])
    keep = [o for o in graph.output if o.name != hidden]
    del graph.output[:]
    graph.output.extend([*keep, pooled_output])
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in model.metadata_props}, POOLING_METADATA: pooling})
    return model
