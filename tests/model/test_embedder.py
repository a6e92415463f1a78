"""E5Embedder against an independent numpy reference, on tiny BERT- and XLM-R-typed models."""

import json

import numpy as np
import pytest

from e5ray import E5Embedder
from e5ray.model.embedder import PREFIXES
from e5ray.testing import load_reference, sample_words


def texts_of_mixed_lengths(n: int = 24, seed: int = 0) -> list[str]:
    words = sample_words()
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(1, 90, size=n)]


def reference_vectors(model_dir, embedder: E5Embedder, texts, prefix="passage: ", pooling="mean"):
    """Tokenise one text at a time (no padding at all), run the numpy encoder, pool, normalise."""
    reference = load_reference(model_dir)
    out = []
    for text in texts:
        ids = np.array([embedder.tokenizer.encode(prefix + text).ids], dtype=np.int64)
        mask = np.ones_like(ids)
        types = np.zeros_like(ids) if "token_type_ids" in embedder.input_names else None
        hidden = reference.last_hidden_state(ids, mask, types)[0].astype(np.float64)
        vec = hidden.mean(axis=0) if pooling == "mean" else hidden[0]
        out.append(vec / np.linalg.norm(vec))
    return np.array(out)


@pytest.fixture(params=["bert", "xlmr"])
def model_dir(request, bert_model_dir, xlmr_model_dir):
    return bert_model_dir if request.param == "bert" else xlmr_model_dir


@pytest.fixture
def embedder(model_dir):
    return E5Embedder(model="tiny-test", model_path=model_dir, threads=1)


def test_matches_numpy_reference_for_mixed_length_batches(model_dir, embedder):
    texts = texts_of_mixed_lengths()
    got = embedder.embed_passages(texts)
    want = reference_vectors(model_dir, embedder, texts)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_mean_pooling_not_first_token(model_dir, embedder):
    """Regression guard: CLS (first-token) pooling would give clearly different vectors."""
    texts = texts_of_mixed_lengths(8, seed=3)
    got = embedder.embed_passages(texts)
    cls = reference_vectors(model_dir, embedder, texts, pooling="cls")
    mean = reference_vectors(model_dir, embedder, texts, pooling="mean")
    assert np.abs(got - mean).max() < 1e-5
    assert np.min(np.sum(got * cls, axis=1)) < 0.99


def test_vector_does_not_depend_on_batch(model_dir, embedder):
    texts = texts_of_mixed_lengths(40, seed=5)
    target = texts[7]
    alone = embedder.embed_passages([target])[0]
    short = embedder.embed_passages([target, "hello"])[0]
    in_long = embedder.embed_passages(texts)[7]
    shuffled_order = np.random.default_rng(0).permutation(len(texts))
    shuffled = embedder.embed_passages([texts[i] for i in shuffled_order])
    in_shuffled = shuffled[int(np.where(shuffled_order == 7)[0][0])]
    tiny_budget = E5Embedder(model="tiny-test", model_path=model_dir, threads=1, token_budget=16).embed_passages(texts)[
        7
    ]
    for other in (short, in_long, in_shuffled, tiny_budget):
        np.testing.assert_allclose(other, alone, atol=1e-5)


def test_prefixes_are_applied_as_chosen(model_dir, embedder):
    texts = texts_of_mixed_lengths(5, seed=7)
    for name, method in (
        ("passage", embedder.embed_passages),
        ("query", embedder.embed_queries),
        ("none", embedder.embed_raw),
    ):
        want = reference_vectors(model_dir, embedder, texts, prefix=PREFIXES[name])
        np.testing.assert_allclose(method(texts), want, atol=1e-5)
    assert np.abs(embedder.embed_passages(texts) - embedder.embed_queries(texts)).max() > 1e-3
    with pytest.raises(ValueError, match="valid: passage, query, none"):
        embedder.embed(texts, prefix="document")


def test_output_contract(embedder):
    vecs = embedder.embed_passages(texts_of_mixed_lengths(6))
    assert vecs.dtype == np.float32 and vecs.shape == (6, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-6)
    empty = embedder.embed_passages([])
    assert empty.shape == (0, embedder.dim) and empty.dtype == np.float32


def test_truncation_is_counted(model_dir):
    embedder = E5Embedder(model="tiny-test", model_path=model_dir, threads=1, max_length=16)
    words = sample_words()
    texts = [" ".join(words[:3]), " ".join(words[:60]), " ".join(words[5:8])]
    result = embedder.embed(texts)
    assert result.truncated.tolist() == [False, True, False]
    tokens = embedder.tokenize(texts)
    assert tokens.lengths.max() == 16


def test_reads_pad_id_and_inputs_from_model_files(model_dir, embedder):
    config = json.loads((embedder.files.config_path).read_text())
    assert embedder.pad_id == config["pad_token_id"]
    assert ("token_type_ids" in embedder.input_names) == (config["model_type"] == "bert")


def test_bad_arguments_name_the_value(model_dir):
    with pytest.raises(ValueError, match="'tpu'.*valid: cpu, gpu"):
        E5Embedder(model="tiny-test", model_path=model_dir, device="tpu")
    with pytest.raises(ValueError, match="threads must be >= 1"):
        E5Embedder(model="tiny-test", model_path=model_dir, threads=0)
    embedder = E5Embedder(model="tiny-test", model_path=model_dir, threads=1)
    with pytest.raises(TypeError, match="position 1 is NoneType"):
        embedder.embed_passages(["fine", None])
    with pytest.raises(TypeError, match="single str"):
        embedder.embed_passages("one string")


def test_gpu_without_cuda_fails_clearly(model_dir):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="CUDA execution provider.*pip install 'e5ray\\[gpu\\]'"):
        E5Embedder(model="tiny-test", model_path=model_dir, device="gpu")


def test_session_uses_the_threads_it_is_given(model_dir):
    embedder = E5Embedder(model="tiny-test", model_path=model_dir, threads=1)
    assert embedder.session.get_session_options().intra_op_num_threads == 1
    assert embedder.session.get_session_options().inter_op_num_threads == 1
