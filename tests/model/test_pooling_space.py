"""Pooling is a space parameter: mean (the paper's) or legacy cls, on CPU and in the GPU head."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict

import numpy as np
import onnx
import pytest
from corpus_utils import read_output, write_corpus
from output_utils import embed_output, verify
from test_embedder import reference_vectors, texts_of_mixed_lengths

from e5ray import E5Embedder
from e5ray.cli.app import main as cli_main
from e5ray.errors import SpaceMismatchError
from e5ray.model.pooling import cls_pool, pool
from e5ray.model.space import EmbeddingSpace


@pytest.fixture(params=["bert", "xlmr"])
def model_dir(request, bert_model_dir, xlmr_model_dir):
    return bert_model_dir if request.param == "bert" else xlmr_model_dir


def test_cls_pooling_reproduces_the_first_token_vector_of_the_reference(model_dir):
    embedder = E5Embedder(model="tiny-test", model_path=model_dir, threads=1, pooling="cls")
    texts = texts_of_mixed_lengths(12, seed=11)
    got = embedder.embed_passages(texts)
    np.testing.assert_allclose(got, reference_vectors(model_dir, embedder, texts, pooling="cls"), atol=1e-5)
    # and it is really another space than mean pooling's
    mean = reference_vectors(model_dir, embedder, texts, pooling="mean")
    assert np.min(np.sum(got * mean, axis=1)) < 0.99


def test_mean_pooling_is_the_default_and_unchanged(model_dir):
    default = E5Embedder(model="tiny-test", model_path=model_dir, threads=1)
    explicit = E5Embedder(model="tiny-test", model_path=model_dir, threads=1, pooling="mean")
    texts = texts_of_mixed_lengths(10, seed=12)
    want = reference_vectors(model_dir, default, texts, pooling="mean")
    np.testing.assert_allclose(default.embed_passages(texts), want, atol=1e-5)
    np.testing.assert_array_equal(default.embed_passages(texts), explicit.embed_passages(texts))
    assert default.space == explicit.space and default.space.pooling == "mean"


def test_pooling_and_normalisation_are_recorded_in_the_space(bert_model_dir, caplog):
    mean = E5Embedder(model="tiny-test", model_path=bert_model_dir, threads=1)
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        cls = E5Embedder(model="tiny-test", model_path=bert_model_dir, threads=1, pooling="cls")
    assert "not the E5 paper's pooling" in caplog.text
    assert (mean.space.pooling, cls.space.pooling) == ("mean", "cls")
    assert mean.space.normalized and cls.space.normalized
    assert mean.space.differences(cls.space) == {"pooling": ("mean", "cls")}
    assert mean.space.fingerprint != cls.space.fingerprint
    for vectors in (mean.embed_passages(["a b c"]), cls.embed_passages(["a b c"])):
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_an_unknown_pooling_is_refused_with_the_valid_ones(bert_model_dir):
    with pytest.raises(ValueError, match=r"unknown pooling 'max'; valid: mean, cls"):
        E5Embedder(model="tiny-test", model_path=bert_model_dir, pooling="max")


def test_fingerprint_of_a_truncating_space_is_what_older_manifests_hold():
    """Outputs committed before pooling/long-text became parameters must still match."""
    space = EmbeddingSpace(model="m", model_sha256="ab" * 32, dim=8, max_length=512, pooling="mean", normalized=True)
    legacy_fields = {k: v for k, v in asdict(space).items() if k not in ("long_text", "stride")}
    legacy = hashlib.sha256(json.dumps(legacy_fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert space.fingerprint == legacy
    assert EmbeddingSpace.from_dict({**legacy_fields, "fingerprint": legacy}) == space


def test_numpy_cls_pool_takes_the_first_position_and_normalises():
    hidden = np.zeros((2, 3, 2), dtype=np.float32)
    hidden[0] = [[3, 4], [9, 9], [9, 9]]
    hidden[1] = [[0, 2], [1, 1], [7, 7]]
    mask = np.array([[1, 1, 0], [1, 1, 1]])
    np.testing.assert_allclose(cls_pool(hidden, mask), [[0.6, 0.8], [0.0, 1.0]])
    np.testing.assert_array_equal(pool(hidden, mask, "cls"), cls_pool(hidden, mask))
    with pytest.raises(ValueError, match="valid: mean, cls"):
        pool(hidden, mask, "first")


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_gpu_pooling_head_computes_the_numpy_pooling(pooling, model_dir, tmp_path):
    """The on-device head (fp16 GPU models) pools as e5ray.model.pooling does, and says how."""
    import onnxruntime as ort

    from e5ray.model.graph import POOLING_METADATA, add_e5_pooling

    embedder = E5Embedder("tiny", model_path=model_dir, threads=1)
    path = tmp_path / "pooled.onnx"
    onnx.save(add_e5_pooling(onnx.load(str(model_dir / "model.onnx")), pooling=pooling), str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_modelmeta().custom_metadata_map[POOLING_METADATA] == pooling
    tokens = embedder.tokenize(["short", "a rather longer text with several more words in it", "mid length"])
    width = int(tokens.lengths.max())
    ids = np.full((3, width), embedder.pad_id, dtype=np.int64)
    for row, seq in enumerate(tokens.ids):
        ids[row, : len(seq)] = seq
    mask = (np.arange(width)[None, :] < tokens.lengths[:, None]).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in embedder.input_names:
        feed["token_type_ids"] = np.zeros_like(ids)
    (on_device,) = session.run(["e5_embedding"], feed)
    np.testing.assert_allclose(on_device, pool(embedder._forward(ids, mask), mask, pooling), atol=1e-6)


def test_an_embedder_refuses_a_pooled_model_of_the_other_pooling(bert_model_dir, tmp_path):
    import shutil

    from e5ray.model.graph import add_e5_pooling

    model_dir = tmp_path / "model"
    shutil.copytree(bert_model_dir, model_dir)
    onnx.save(add_e5_pooling(onnx.load(str(model_dir / "model.onnx")), pooling="mean"), str(model_dir / "model.onnx"))
    assert E5Embedder("tiny", model_path=model_dir, threads=1).output_name == "e5_embedding"
    with pytest.raises(ValueError, match=r"pools by 'mean', this embedder by 'cls'"):
        E5Embedder("tiny", model_path=model_dir, threads=1, pooling="cls")


def test_a_refresh_refuses_to_mix_mean_and_cls_unless_full(tmp_path, bert_model_dir, capsys):
    write_corpus(tmp_path / "in", shards=2, rows=12)
    out = tmp_path / "out"

    def embed(**kw):
        return embed_output(tmp_path / "in", out, bert_model_dir, **kw)

    v1 = embed()
    assert v1["space"]["pooling"] == "mean"
    # truncating outputs are written as before long texts had modes: no window counts
    assert "windows" not in v1["totals"] and not {"documents", "windows"} & set(v1["shards"][0])
    assert "long_text" in v1["space"] and v1["space"]["stride"] == 0
    mean_vectors = read_output(str(out))
    with pytest.raises(SpaceMismatchError, match=r"pooling: 'mean' in the output, 'cls' now"):
        embed(pooling="cls")
    v2 = embed(pooling="cls", full=True)
    assert v2["space"]["pooling"] == "cls" and v2["run"]["embedded_shards"] == 2
    assert verify(out) == []
    cls_vectors = read_output(str(out))
    assert sorted(cls_vectors) == sorted(mean_vectors)
    assert max(abs(float(cls_vectors[i] @ mean_vectors[i])) for i in mean_vectors) < 0.999
    # back to mean: refused again, through the command line too
    code = cli_main(
        ["embed", "--input", str(tmp_path / "in"), "--output", str(out), "--model", "tiny"]
        + ["--model-path", str(bert_model_dir), "--executor", "local", "--quiet"]
    )
    assert code == 3  # SpaceMismatchError
    assert "SpaceMismatchError" in capsys.readouterr().err
    code = cli_main(
        ["embed", "--input", str(tmp_path / "in"), "--output", str(out), "--model", "tiny", "--pooling", "cls"]
        + ["--model-path", str(bert_model_dir), "--executor", "local", "--json"]
    )
    assert code == 0 and json.loads(capsys.readouterr().out)["changes"]["unchanged"] == 2


def test_the_fp16_copy_for_cls_is_a_file_of_its_own_with_a_cls_head(bert_model_dir, tmp_path):
    import shutil

    from e5ray.model.graph import POOLING_METADATA
    from e5ray.model.precision import prepare_model_file

    model_dir = tmp_path / "model"
    shutil.copytree(bert_model_dir, model_dir)
    source = model_dir / "model.onnx"
    cls_file = prepare_model_file(source, "fp16", pooling="cls")
    assert cls_file.name == "model.fp16-cls.onnx"
    model = onnx.load(str(cls_file))
    assert {p.key: p.value for p in model.metadata_props}[POOLING_METADATA] == "cls"
    assert any(n.op_type == "Gather" and n.output[0] == "e5pool.cls" for n in model.graph.node)
