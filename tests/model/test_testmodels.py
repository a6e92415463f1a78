"""Tests for the synthetic E5-like test models (e5ray.testing)."""

from __future__ import annotations

import json
import math
import unicodedata
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from tokenizers import Tokenizer  # noqa: E402

from e5ray.testing import (  # noqa: E402
    SHAPES,
    EncoderShape,
    ReferenceEncoder,
    load_reference,
    sample_words,
    write_test_model,
)
from e5ray.testing.reference import _erf  # noqa: E402

ARCHS = ("bert", "xlmr")
# (cls, sep, unk, pad) ids per architecture.
SPECIAL_IDS = {"bert": (2, 3, 1, 0), "xlmr": (0, 2, 3, 1)}
TOKEN_NAMES = {"bert": ("[CLS]", "[SEP]", "[UNK]", "[PAD]"), "xlmr": ("<s>", "</s>", "<unk>", "<pad>")}
MODEL_FILES = ("model.onnx", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "config.json")
TEXTS = [
    "query: how is the weather in London today?",
    "passage: Die Geschichte der Stadt Berlin",
    "日本語 ありがとう 東京",
    "привет мир, это поиск",
    "a",
    "नमस्ते दिल्ली 123 मराठी",  # last word is not in the list: split into characters
]


@pytest.fixture(scope="module", params=ARCHS)
def tiny(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    arch = request.param
    return arch, write_test_model(tmp_path_factory.mktemp(f"tiny-{arch}"), arch=arch)


def _session(directory: Path, onnx_name: str = "model.onnx") -> ort.InferenceSession:
    return ort.InferenceSession(str(directory / onnx_name), providers=["CPUExecutionProvider"])


def _encode(directory: Path, arch: str, texts: list[str], pad_to: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    _, _, _, pad_id = SPECIAL_IDS[arch]
    tokenizer.enable_padding(pad_id=pad_id, pad_token=TOKEN_NAMES[arch][3], length=pad_to)
    encodings = tokenizer.encode_batch(texts)
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def _run(session: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feed = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in {i.name for i in session.get_inputs()}:
        feed["token_type_ids"] = np.zeros_like(ids)
    (out,) = session.run(["last_hidden_state"], feed)
    return out


def _assert_close_at_tokens(actual: np.ndarray, expected: np.ndarray, mask: np.ndarray, atol: float = 1e-5) -> None:
    real = mask.astype(bool)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual[real], expected[real], rtol=0, atol=atol)


def _mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    m = mask[..., None].astype(np.float64)
    return (hidden * m).sum(axis=1) / m.sum(axis=1)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


# ---------------------------------------------------------------------------------------
# Layout and metadata


def test_files_exist_and_config(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    for name in MODEL_FILES:
        assert (directory / name).is_file(), name
    assert not (directory / "model.onnx_data").exists()  # tiny stays a single file

    config = json.loads((directory / "config.json").read_text())
    shape = SHAPES["tiny"]
    assert config["hidden_size"] == shape.hidden
    assert config["num_hidden_layers"] == shape.layers
    assert config["num_attention_heads"] == shape.heads
    assert config["intermediate_size"] == shape.intermediate
    assert config["vocab_size"] == shape.vocab_size
    if arch == "bert":
        assert config["model_type"] == "bert"
        assert config["pad_token_id"] == 0
        assert config["max_position_embeddings"] == 512
        assert config["type_vocab_size"] == 2
    else:
        assert config["model_type"] == "xlm-roberta"
        assert config["pad_token_id"] == 1
        assert config["max_position_embeddings"] == 514

    tokenizer_config = json.loads((directory / "tokenizer_config.json").read_text())
    assert tokenizer_config["model_max_length"] == 512
    cls, sep, unk, pad = TOKEN_NAMES[arch]
    assert (tokenizer_config["cls_token"], tokenizer_config["sep_token"]) == (cls, sep)
    assert (tokenizer_config["unk_token"], tokenizer_config["pad_token"]) == (unk, pad)
    tokens_map = json.loads((directory / "special_tokens_map.json").read_text())
    assert tokens_map["pad_token"] == pad


def test_onnx_checker_and_graph_interface(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    onnx.checker.check_model(str(directory / "model.onnx"), full_check=True)
    model = onnx.load(str(directory / "model.onnx"))
    inputs = {i.name: i for i in model.graph.input}
    expected = ["input_ids", "attention_mask"] + (["token_type_ids"] if arch == "bert" else [])
    assert list(inputs) == expected
    for value in inputs.values():
        assert value.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = value.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch_size", "sequence_length"]  # dynamic
    (output,) = model.graph.output
    assert output.name == "last_hidden_state"
    assert output.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert output.type.tensor_type.shape.dim[2].dim_value == SHAPES["tiny"].hidden

    weights = {t.name: t for t in model.graph.initializer}
    assert list(weights["embeddings.word_embeddings.weight"].dims) == [SHAPES["tiny"].vocab_size, 32]
    rows = 512 if arch == "bert" else 514
    assert list(weights["embeddings.position_embeddings.weight"].dims) == [rows, 32]

    session_inputs = [i.name for i in _session(directory).get_inputs()]
    assert ("token_type_ids" in session_inputs) == (arch == "bert")


# ---------------------------------------------------------------------------------------
# Tokenizer


def test_tokenizer_sample_sentence_has_no_unk(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    cls, sep, unk, _ = SPECIAL_IDS[arch]
    words = sample_words()
    sentence = " ".join(words)
    ids = tokenizer.encode(sentence).ids
    assert ids[0] == cls and ids[-1] == sep
    assert unk not in ids
    assert max(ids) < SHAPES["tiny"].vocab_size
    # Every word in the list is a single piece or (CJK, BERT) single characters.
    for word in words:
        assert unk not in tokenizer.encode(word).ids, word
    # Words outside the list still split into known pieces instead of UNK.
    unseen = tokenizer.encode("zebraquokka Пётр").ids
    assert unk not in unseen and len(unseen) > 4
    decoded = tokenizer.decode(tokenizer.encode("query: the weather in London").ids)
    expected = "query: the weather in london" if arch == "bert" else "query: the weather in London"
    assert decoded.replace(" :", ":") == expected


def test_xlmr_tokenizer_round_trips_the_word_list(tmp_path: Path) -> None:
    directory = write_test_model(tmp_path, arch="xlmr")
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    sentence = unicodedata.normalize("NFKC", " ".join(sample_words()))
    encoding = tokenizer.encode(sentence)
    # Every listed word is one vocabulary piece.
    assert len(encoding.ids) == len(sample_words()) + 2
    assert tokenizer.decode(encoding.ids) == sentence


def test_fastembed_loader_resolves_padding(tiny: tuple[str, Path]) -> None:
    preprocessor_utils = pytest.importorskip("fastembed.common.preprocessor_utils")
    arch, directory = tiny
    tokenizer, special = preprocessor_utils.load_tokenizer(directory)
    _, _, _, pad = SPECIAL_IDS[arch]
    assert tokenizer.padding["pad_id"] == pad
    assert tokenizer.truncation["max_length"] == 512
    assert set(TOKEN_NAMES[arch]) <= set(special)
    ids = [e.ids for e in tokenizer.encode_batch(["a", "hello world"])]
    assert ids[0][-1] == pad and len(ids[0]) == len(ids[1])


# ---------------------------------------------------------------------------------------
# Network


def test_onnxruntime_matches_reference(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    ids, mask = _encode(directory, arch, TEXTS)
    assert len(set(mask.sum(axis=1))) > 3  # genuinely mixed lengths
    out = _run(_session(directory), ids, mask)
    assert out.dtype == np.float32 and out.shape == (len(TEXTS), ids.shape[1], 32)
    reference = load_reference(directory)
    assert isinstance(reference, ReferenceEncoder)
    expected = reference.last_hidden_state(ids, mask)
    _assert_close_at_tokens(out, expected, mask)


def test_token_type_ids_are_used_by_bert(tmp_path: Path) -> None:
    directory = write_test_model(tmp_path, arch="bert")
    ids, mask = _encode(directory, "bert", TEXTS[:2])
    types = np.zeros_like(ids)
    types[:, 3:] = 1
    (out,) = _session(directory).run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    reference = load_reference(directory)
    _assert_close_at_tokens(out, reference.last_hidden_state(ids, mask, types), mask)
    assert np.abs(out - reference.last_hidden_state(ids, mask)).max() > 1e-3


def test_extra_padding_does_not_change_real_tokens(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    session = _session(directory)
    ids, mask = _encode(directory, arch, TEXTS)
    padded_ids, padded_mask = _encode(directory, arch, TEXTS, pad_to=ids.shape[1] + 7)
    assert (padded_ids[:, ids.shape[1] :] == SPECIAL_IDS[arch][3]).all()
    width = ids.shape[1]
    short = _run(session, ids, mask)
    long = _run(session, padded_ids, padded_mask)
    _assert_close_at_tokens(long[:, :width], short, mask, atol=1e-6)
    reference = load_reference(directory)
    _assert_close_at_tokens(
        reference.last_hidden_state(padded_ids, padded_mask)[:, :width],
        reference.last_hidden_state(ids, mask),
        mask,
        atol=1e-12,
    )
    # A text alone equals the same text inside a batch.
    alone = _run(session, ids[:1, : mask[0].sum()], mask[:1, : mask[0].sum()])
    np.testing.assert_allclose(alone[0], short[0, : mask[0].sum()], atol=1e-6)


def test_mask_matters(tiny: tuple[str, Path]) -> None:
    """Unmasking padding must change the output, or the padding test proves nothing."""
    arch, directory = tiny
    session = _session(directory)
    ids, mask = _encode(directory, arch, TEXTS)
    masked = _run(session, ids, mask)
    unmasked = _run(session, ids, np.ones_like(mask))
    real = mask.astype(bool)
    assert np.abs(masked[real] - unmasked[real]).max() > 1e-4


def test_full_length_positions(tiny: tuple[str, Path]) -> None:
    """512 tokens use the whole position table (positions up to 513 for xlmr)."""
    arch, directory = tiny
    ids, mask = _encode(directory, arch, [" ".join(["water"] * 510)])
    assert ids.shape == (1, 512)
    out = _run(_session(directory), ids, mask)
    _assert_close_at_tokens(out, load_reference(directory).last_hidden_state(ids, mask), mask)


def test_pooling_and_texts_are_distinguishable(tiny: tuple[str, Path]) -> None:
    arch, directory = tiny
    ids, mask = _encode(directory, arch, TEXTS)
    hidden = _run(_session(directory), ids, mask).astype(np.float64)
    mean = _unit(_mean_pool(hidden, mask))
    first = _unit(hidden[:, 0])
    # Mean pooling and first-token pooling disagree clearly for every multi-token text.
    assert (np.sum(mean * first, axis=1) < 0.9).all()
    # Different texts give clearly different mean-pooled embeddings.
    similarity = mean @ mean.T
    off_diagonal = similarity[~np.eye(len(TEXTS), dtype=bool)]
    assert off_diagonal.max() < 0.95


def test_seed_changes_weights_and_is_deterministic(tmp_path: Path) -> None:
    a = write_test_model(tmp_path / "a", arch="xlmr", seed=1)
    b = write_test_model(tmp_path / "b", arch="xlmr", seed=2)
    a_again = write_test_model(tmp_path / "a2", arch="xlmr", seed=1)
    assert (a / "model.onnx").read_bytes() == (a_again / "model.onnx").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()
    ids, mask = _encode(a, "xlmr", TEXTS)
    out_a = _run(_session(a), ids, mask)
    out_b = _run(_session(b), ids, mask)
    assert np.abs(out_a - out_b)[mask.astype(bool)].max() > 0.1


# ---------------------------------------------------------------------------------------
# Shapes, external data, vocabularies


def test_mid_size_shape_with_filler(tmp_path: Path) -> None:
    shape = EncoderShape(layers=2, hidden=64, heads=4, intermediate=128, vocab_size=5000, max_positions=128)
    for arch in ARCHS:
        directory = write_test_model(tmp_path / arch, arch=arch, shape=shape, onnx_name="encoder.onnx")
        tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        assert tokenizer.get_vocab_size() == 5000
        vocab = tokenizer.get_vocab()
        assert sum(token.startswith("<filler_") for token in vocab) > 3000
        if arch == "xlmr":
            assert vocab["<mask>"] == 4999  # last id, as in XLM-R
        config = json.loads((directory / "config.json").read_text())
        assert config["max_position_embeddings"] == (128 if arch == "bert" else 130)
        ids, mask = _encode(directory, arch, TEXTS)
        out = _run(_session(directory, "encoder.onnx"), ids, mask)
        assert out.shape[-1] == 64
        expected = load_reference(directory, onnx_name="encoder.onnx").last_hidden_state(ids, mask)
        _assert_close_at_tokens(out, expected, mask)


@pytest.mark.parametrize("arch", ARCHS)
def test_external_data_layout(tmp_path: Path, arch: str) -> None:
    inline = write_test_model(tmp_path / "inline", arch=arch)
    external = write_test_model(tmp_path / "external", arch=arch, external_data=True)
    assert (external / "model.onnx_data").is_file()
    assert (external / "model.onnx").stat().st_size < 20_000  # only the graph
    onnx.checker.check_model(str(external / "model.onnx"))
    proto = onnx.load(str(external / "model.onnx"), load_external_data=False)
    word = next(t for t in proto.graph.initializer if t.name == "embeddings.word_embeddings.weight")
    assert word.data_location == onnx.TensorProto.EXTERNAL
    assert {e.key: e.value for e in word.external_data}["location"] == "model.onnx_data"

    ids, mask = _encode(inline, arch, TEXTS)
    out_external = _run(_session(external), ids, mask)
    out_inline = _run(_session(inline), ids, mask)
    np.testing.assert_array_equal(out_external, out_inline)  # same seed, same weights
    _assert_close_at_tokens(out_external, load_reference(external).last_hidden_state(ids, mask), mask)

    # Rewriting inline removes the stale split.
    write_test_model(external, arch=arch, external_data=False)
    assert not (external / "model.onnx_data").exists()


def test_onnx_in_subfolder(tmp_path: Path) -> None:
    """Some repositories keep the export in onnx/ next to a root-level tokenizer."""
    directory = write_test_model(tmp_path, arch="xlmr", onnx_name="onnx/model.onnx", external_data=True)
    assert (directory / "onnx" / "model.onnx_data").is_file()
    assert (directory / "tokenizer.json").is_file()
    ids, mask = _encode(directory, "xlmr", TEXTS[:2])
    out = _run(_session(directory, "onnx/model.onnx"), ids, mask)
    expected = load_reference(directory, onnx_name="onnx/model.onnx").last_hidden_state(ids, mask)
    _assert_close_at_tokens(out, expected, mask)


def test_custom_words_and_too_small_vocab(tmp_path: Path) -> None:
    words = ["alpha", "beta", "gamma", "δέλτα"]
    shape = EncoderShape(layers=1, hidden=16, heads=2, intermediate=32, vocab_size=200)
    directory = write_test_model(tmp_path / "ok", arch="bert", shape=shape, words=words)
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    assert tokenizer.encode("alpha δέλτα").tokens == ["[CLS]", "alpha", "δέλτα", "[SEP]"]
    with pytest.raises(ValueError, match="vocab_size"):
        write_test_model(tmp_path / "small", shape=EncoderShape(1, 16, 2, 32, vocab_size=50))
    with pytest.raises(ValueError, match="unknown shape"):
        write_test_model(tmp_path / "bad", shape="e5-huge")
    with pytest.raises(ValueError, match="divisible"):
        EncoderShape(layers=1, hidden=30, heads=4, intermediate=8, vocab_size=10)


def test_shapes_table() -> None:
    assert SHAPES["e5-small"] == EncoderShape(12, 384, 12, 1536, 250_037)
    assert SHAPES["e5-base"] == EncoderShape(12, 768, 12, 3072, 250_002)
    assert SHAPES["e5-large"] == EncoderShape(24, 1024, 16, 4096, 250_002)
    assert 300 <= SHAPES["tiny"].vocab_size <= 2500


def test_sample_words_cover_many_scripts() -> None:
    words = sample_words()
    assert len(words) >= 300 and len(set(words)) == len(words)
    scripts = set()
    for word in words:
        for char in word:
            if char.isalpha():
                scripts.add(unicodedata.name(char).split()[0])
    for script in (
        "LATIN",
        "CYRILLIC",
        "GREEK",
        "ARABIC",
        "HEBREW",
        "DEVANAGARI",
        "CJK",
        "HIRAGANA",
        "KATAKANA",
        "HANGUL",
    ):
        assert script in scripts, script


def test_reference_erf_is_accurate() -> None:
    xs = np.linspace(-7.0, 7.0, 4001)
    expected = np.array([math.erf(x) for x in xs])
    np.testing.assert_allclose(_erf(xs), expected, rtol=0, atol=1e-13)


def test_without_onnx_the_error_names_the_extra_to_install() -> None:
    import subprocess
    import sys

    # sys.modules["onnx"] = None makes `import onnx` fail as if it were not installed.
    code = (
        "import sys; sys.modules['onnx'] = None\n"
        "from e5ray.testing import SHAPES, sample_words\n"
        "assert SHAPES['tiny'].hidden == 32 and sample_words()\n"
        "try:\n"
        "    from e5ray.testing import write_test_model\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert "onnx" in out.stdout and 'pip install "e5ray[test]"' in out.stdout, out.stdout + out.stderr
