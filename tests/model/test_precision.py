"""Reduced precision: int8 behind its quality gate, the fp16 GPU copy's CPU-side conversion."""

import numpy as np
import onnx
import pytest

from e5ray import E5Embedder
from e5ray.model.precision import QualityGateError, convert_fp16, prepare_model_file


def test_int8_copy_is_cached_gated_and_close(bert_model_dir, tmp_path):
    int8 = E5Embedder("tiny", model_path=bert_model_dir, precision="int8", threads=1)
    fp32 = E5Embedder("tiny", model_path=bert_model_dir, threads=1)
    assert int8.onnx_path != fp32.onnx_path and int8.onnx_path.name.endswith(".int8.onnx")
    assert int8.space.precision == "int8" and int8.space.fingerprint != fp32.space.fingerprint
    assert int8.int8_cosine >= 0.99
    texts = ["int8 weights keep the direction", "a second, somewhat longer sentence of sample words"]
    cos = np.sum(int8.embed_passages(texts) * fp32.embed_passages(texts), axis=1)
    assert cos.min() > 0.98
    mtime = int8.onnx_path.stat().st_mtime_ns
    assert prepare_model_file(fp32.onnx_path, "int8").stat().st_mtime_ns == mtime  # reused, not redone


def test_int8_gate_refuses_below_threshold(bert_model_dir):
    with pytest.raises(QualityGateError, match="under the gate 1.01"):
        E5Embedder("tiny", model_path=bert_model_dir, precision="int8", threads=1, int8_min_cosine=1.01)


def test_fp16_needs_gpu(bert_model_dir):
    with pytest.raises(ValueError, match="'fp16' needs device='gpu'"):
        E5Embedder("tiny", model_path=bert_model_dir, precision="fp16")


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_fp16_conversion_keeps_fp32_io(arch, bert_model_dir, xlmr_model_dir, tmp_path):
    source = (bert_model_dir if arch == "bert" else xlmr_model_dir) / "model.onnx"
    target = tmp_path / "model.fp16.onnx"
    convert_fp16(source, target)
    model = onnx.load(str(target))
    floats = [t for t in model.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    big = [t for t in floats if np.prod(t.dims) >= 1024]
    assert big and all(t.data_type == onnx.TensorProto.FLOAT16 for t in big)
    assert [o.name for o in model.graph.output] == ["e5_embedding"]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.name for i in model.graph.input} >= {"input_ids", "attention_mask"}


@pytest.mark.parametrize("arch", ["bert", "xlmr"])
def test_pooling_head_matches_numpy_pooling(arch, bert_model_dir, xlmr_model_dir, tmp_path):
    """The on-device pooling head (GPU models) computes what e5ray.model.pooling computes."""
    import onnxruntime as ort

    from e5ray.model.graph import add_e5_pooling
    from e5ray.model.pooling import e5_pool

    model_dir = bert_model_dir if arch == "bert" else xlmr_model_dir
    embedder = E5Embedder("tiny", model_path=model_dir, threads=1)
    pooled_path = tmp_path / "pooled.onnx"
    onnx.save(add_e5_pooling(onnx.load(str(model_dir / "model.onnx"))), str(pooled_path))
    pooled = ort.InferenceSession(str(pooled_path), providers=["CPUExecutionProvider"])
    tokens = embedder.tokenize(["short", "a rather longer text with several more words in it", "mid length text"])
    width = int(tokens.lengths.max())
    ids = np.full((3, width), embedder.pad_id, dtype=np.int64)
    for row, seq in enumerate(tokens.ids):
        ids[row, : len(seq)] = seq
    mask = (np.arange(width)[None, :] < tokens.lengths[:, None]).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in embedder.input_names:
        feed["token_type_ids"] = np.zeros_like(ids)
    (on_device,) = pooled.run(["e5_embedding"], feed)
    np.testing.assert_allclose(on_device, e5_pool(embedder._forward(ids, mask), mask), atol=1e-6)


def test_without_the_onnx_package_fp32_loads_the_unfused_source(bert_model_dir, tmp_path, monkeypatch, caplog):
    from pathlib import Path

    monkeypatch.setitem(__import__("sys").modules, "onnx", None)  # `import onnx` now raises ImportError
    source = Path(bert_model_dir) / "model.onnx"
    with caplog.at_level("WARNING", logger="e5ray"):
        chosen = prepare_model_file(source, "fp32", tmp_path / "cache")
    assert chosen == source
    assert "onnx package is missing" in caplog.text
