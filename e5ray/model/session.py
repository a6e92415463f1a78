"""The ONNX Runtime session an embedder runs: made, and checked against what e5ray needs.

Invariants:
- the session uses exactly the embedder's thread count (intra-op; one inter-op thread,
  sequential execution), so several embedders on one node do not oversubscribe it;
- device="gpu" runs on CUDA or fails: onnxruntime's silent fallback to CPU (a warning
  only, when the CUDA libraries fail to load) is turned into an error;
- the graph takes `input_ids` and `attention_mask`, and its output is either e5ray's own
  pooling head (pooled on the device, by the embedder's pooling) or token-level hidden
  states that e5ray pools itself; never a model wrapper's own pooled output.
"""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from e5ray.errors import DeviceUnavailableError, UsageError
from e5ray.model.pooling import POOLED_OUTPUT


def make_session(onnx_path: Path, device: str, threads: int, gpu_id: int) -> ort.InferenceSession:
    """A session of `onnx_path` on `device` (CUDA device `gpu_id` for "gpu") with `threads` threads."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if device == "cpu":
        return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    session = ort.InferenceSession(
        str(onnx_path),
        options,
        providers=[("CUDAExecutionProvider", {"device_id": gpu_id}), "CPUExecutionProvider"],
    )
    # onnxruntime falls back to CPU with only a warning when CUDA libraries fail to load.
    if session.get_providers()[0] != "CUDAExecutionProvider":
        raise DeviceUnavailableError(
            f"CUDA execution provider failed to initialise (session providers: {session.get_providers()}); "
            "check that the CUDA and cuDNN libraries matching onnxruntime-gpu are installed"
        )
    return session


def input_names(session: ort.InferenceSession, onnx_path: Path) -> set[str]:
    """The graph's input names; raises unless it takes `input_ids` and `attention_mask`."""
    names = {i.name for i in session.get_inputs()}
    for required in ("input_ids", "attention_mask"):
        if required not in names:
            raise UsageError(f"{onnx_path}: ONNX inputs {sorted(names)} lack {required!r}")
    return names


def token_output_name(session: ort.InferenceSession, onnx_path: Path, pooling: str) -> str:
    """The output to read: e5ray's pooling head (if it pools by `pooling`), else the token-level states."""
    outputs = session.get_outputs()
    by_name = {o.name: o for o in outputs}
    if POOLED_OUTPUT in by_name:  # our own pooling head (GPU models): already pooled
        from e5ray.model.graph import POOLING_METADATA

        # Heads made before the metadata existed were all mean pooling.
        head = session.get_modelmeta().custom_metadata_map.get(POOLING_METADATA, "mean")
        if head != pooling:
            raise UsageError(f"{onnx_path}: its pooling head pools by {head!r}, this embedder by {pooling!r}")
        return POOLED_OUTPUT
    if "last_hidden_state" in by_name:
        return "last_hidden_state"
    token_level = [o.name for o in outputs if len(o.shape) == 3]
    if not token_level:
        raise UsageError(
            f"{onnx_path}: no token-level output (rank 3) among {[(o.name, o.shape) for o in outputs]}; "
            "e5ray pools itself and needs the encoder's last hidden state"
        )
    return str(token_level[0])


def check_output_width(session: ort.InferenceSession, onnx_path: Path, dim: int) -> None:
    """The first output's declared width (when the graph declares one) is the config's hidden size."""
    declared = session.get_outputs()[0].shape[-1]
    if isinstance(declared, int) and declared != dim:
        raise UsageError(f"{onnx_path}: output width {declared} != config.json hidden_size {dim}")
