"""An independent numpy (float64) forward pass of a `write_test_model` network.

It shares no code with the ONNX graph builder: only the weights (read back from the ONNX
initializers) and config.json. Tests compare onnxruntime's output, and e5ray's pooled
vectors, with it; an error in either the graph or the reference shows as a mismatch.
`load_reference` needs the optional ``onnx`` package (``pip install "e5ray[test]"``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from e5ray.testing.archs import MASK_VALUE, MODEL_TYPE_TO_ARCH, Arch
from e5ray.testing.extras import missing_extra


def _layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _erf(x: np.ndarray) -> np.ndarray:
    """float64 erf to ~1e-15, vectorised (numpy has none and scipy is not a dependency)."""
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    out = np.ones_like(a)
    # |x| < 3: Maclaurin series; 60 terms reach 1e-17 at |x| = 3.
    small = a < 3.0
    xs = a[small]
    term, total, x2 = xs.copy(), xs.copy(), xs * xs
    for n in range(1, 60):
        term *= -x2 / n
        total += term / (2 * n + 1)
    out[small] = total * (2.0 / math.sqrt(math.pi))
    # 3 <= |x| < 6: erfc continued fraction, evaluated backwards; beyond 6 erf is 1.
    mid = (a >= 3.0) & (a < 6.0)
    xm = a[mid]
    frac = xm.copy()
    for k in range(60, 0, -1):
        frac = xm + (k / 2.0) / frac
    out[mid] = 1.0 - np.exp(-xm * xm) / math.sqrt(math.pi) / frac
    return np.copysign(out, x)


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


class ReferenceEncoder:
    """Independent numpy (float64) forward pass of a `write_test_model` network."""

    def __init__(self, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> None:
        model_type = config["model_type"]
        if model_type not in MODEL_TYPE_TO_ARCH:
            raise ValueError(f"unsupported model_type {model_type!r}")
        self.arch: Arch = MODEL_TYPE_TO_ARCH[model_type]  # type: ignore[assignment]
        self.weights = dict(weights)
        self.layers = int(config["num_hidden_layers"])
        self.heads = int(config["num_attention_heads"])
        self.hidden = int(config["hidden_size"])
        self.pad_token_id = int(config["pad_token_id"])
        self.layer_norm_eps = float(config["layer_norm_eps"])

    def _w(self, name: str) -> np.ndarray:
        # Weights stay float32 in memory (e5-large is 2 GiB); maths is float64.
        return self.weights[name].astype(np.float64)

    def _linear(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return x @ self._w(f"{prefix}.weight") + self._w(f"{prefix}.bias")

    def _ln(self, x: np.ndarray, prefix: str) -> np.ndarray:
        return _layer_norm(x, self._w(f"{prefix}.weight"), self._w(f"{prefix}.bias"), self.layer_norm_eps)

    def last_hidden_state(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        token_type_ids: np.ndarray | None = None,
    ) -> np.ndarray:
        """float64 (batch, seq, hidden) output of the encoder."""
        ids = np.asarray(input_ids, dtype=np.int64)
        mask = np.asarray(attention_mask, dtype=np.int64)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal 2-D shapes")
        types = np.zeros_like(ids) if token_type_ids is None else np.asarray(token_type_ids, dtype=np.int64)
        batch, seq = ids.shape

        if self.arch == "bert":
            positions = np.broadcast_to(np.arange(seq), ids.shape)
        else:
            not_pad = (ids != self.pad_token_id).astype(np.int64)
            positions = np.cumsum(not_pad, axis=1) * not_pad + self.pad_token_id
        x = (
            self.weights["embeddings.word_embeddings.weight"][ids].astype(np.float64)
            + self.weights["embeddings.position_embeddings.weight"][positions].astype(np.float64)
            + self.weights["embeddings.token_type_embeddings.weight"][types].astype(np.float64)
        )
        x = self._ln(x, "embeddings.LayerNorm")

        additive = (1.0 - mask.astype(np.float64))[:, None, None, :] * MASK_VALUE
        head_dim = self.hidden // self.heads

        def split(t: np.ndarray) -> np.ndarray:
            return t.reshape(batch, seq, self.heads, head_dim).transpose(0, 2, 1, 3)

        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."
            q = split(self._linear(x, p + "attention.self.query"))
            k = split(self._linear(x, p + "attention.self.key"))
            v = split(self._linear(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head_dim) + additive
            scores -= scores.max(axis=-1, keepdims=True)
            probs = np.exp(scores)
            probs /= probs.sum(axis=-1, keepdims=True)
            context = (probs @ v).transpose(0, 2, 1, 3).reshape(batch, seq, self.hidden)
            x = self._ln(self._linear(context, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            inner = _gelu(self._linear(x, p + "intermediate.dense"))
            x = self._ln(self._linear(inner, p + "output.dense") + x, p + "output.LayerNorm")
        return x


def load_reference(directory: str | Path, *, onnx_name: str = "model.onnx") -> ReferenceEncoder:
    """Build a `ReferenceEncoder` from the initializers of `directory/onnx_name`."""
    root = Path(directory)
    onnx_path = root / onnx_name
    config = json.loads((root / "config.json").read_text(encoding="utf-8"))
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise missing_extra("onnx", "load_reference (reading ONNX initializers)") from exc
    # External data is read tensor by tensor by to_array instead of into the proto.
    model = onnx.load(str(onnx_path), load_external_data=False)
    weights = {
        tensor.name: numpy_helper.to_array(tensor, base_dir=str(onnx_path.parent))
        for tensor in model.graph.initializer
        if not tensor.name.startswith("const.")
    }
    return ReferenceEncoder(weights, config)
