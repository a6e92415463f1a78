"""The ceiling: tokens/s if every FLOP of the forward pass ran at the measured MatMul speed.

FLOPs per token = layers x [2 (4 h^2 + 2 h f) (dense) + 2 x 2 L h (QK^T and AV)], with L the
token-weighted mean length (the sequence length the average token sits in). Embeddings are
lookups, not FLOPs. The CPU's FLOP/s is measured with one onnxruntime MatMul of the model's
FFN size on the benchmark's threads (needs the optional onnx package); the GPU's is the
published dense fp16 peak.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from e5ray.testing.extras import missing_extra
from e5ray.testing.shapes import EncoderShape

H100_DENSE_FP16_FLOPS = 990e12


def non_embedding_params(shape: EncoderShape) -> int:
    """Weights that every token multiplies through (embeddings are lookups, not FLOPs)."""
    h, f = shape.hidden, shape.intermediate
    return shape.layers * (4 * h * h + 4 * h + 2 * h * f + h + f + 4 * h)


def flops_per_token(shape: EncoderShape, seq_len: float) -> float:
    """Forward FLOPs per token: layers x [2 (4 h^2 + 2 h f) (dense) + 2 x 2 L h (QK^T and AV)]."""
    h, f = shape.hidden, shape.intermediate
    return float(shape.layers * (2 * (4 * h * h + 2 * h * f) + 4 * seq_len * h))


def flops_formula(shape: EncoderShape, seq_len: float) -> str:
    h, f, n = shape.hidden, shape.intermediate, shape.layers
    return (
        f"FLOPs/token = layers x [2(4h^2 + 2hf) + 4Lh] = {n} x [2(4*{h}^2 + 2*{h}*{f}) + 4*{seq_len:.1f}*{h}]"
        f" = {flops_per_token(shape, seq_len) / 1e6:.2f} MFLOP (L = token-weighted mean length)"
    )


def session_options(threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def matmul_throughput(
    k: int, n: int, threads: int, rows: int = 2048, reps: int = 20, dtype: str = "fp32"
) -> dict[str, Any]:
    """GFLOP/s of one onnxruntime MatMul (rows x k) @ (k x n) on `threads` threads.

    fp32: MatMul; int8: MatMulInteger (uint8 activations x int8 weights), what dynamic
    quantisation runs. Counts 2 x rows x k x n FLOPs per run (int8: integer ops).
    """
    import onnxruntime as ort

    try:
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise missing_extra("onnx", "the MatMul ceiling of jobs/benchmark.py", ("bench",)) from exc

    rng = np.random.default_rng(0)
    weight: np.ndarray
    x: np.ndarray
    if dtype == "fp32":
        weight = rng.standard_normal((k, n), dtype=np.float32) * 0.05
        x = rng.standard_normal((rows, k), dtype=np.float32)
        node = helper.make_node("MatMul", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    elif dtype == "int8":
        weight = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
        x = rng.integers(0, 256, size=(rows, k), dtype=np.uint8)
        node = helper.make_node("MatMulInteger", ["x", "w"], ["y"])
        x_type, y_type = TensorProto.UINT8, TensorProto.INT32
    else:
        raise ValueError(f"unknown dtype {dtype!r}; valid: fp32, int8")
    graph = helper.make_graph(
        [node],
        "matmul",
        [helper.make_tensor_value_info("x", x_type, ["rows", k])],
        [helper.make_tensor_value_info("y", y_type, ["rows", n])],
        initializer=[numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    session = ort.InferenceSession(
        model.SerializeToString(), session_options(threads), providers=["CPUExecutionProvider"]
    )
    feed = {"x": x}
    for _ in range(3):
        session.run(None, feed)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    flops = 2.0 * rows * k * n
    return {
        "op": "MatMul" if dtype == "fp32" else "MatMulInteger",
        "dtype": dtype,
        "m": rows,
        "k": k,
        "n": n,
        "threads": threads,
        "reps": reps,
        "gflops_best": round(flops / min(times) / 1e9, 2),
        "gflops_median": round(flops / float(np.median(times)) / 1e9, 2),
    }


def ceiling(shape: EncoderShape, seq_len: float, flops_per_s: float) -> float:
    """Tokens/s if every FLOP of the forward pass ran at `flops_per_s`."""
    return flops_per_s / flops_per_token(shape, seq_len)
