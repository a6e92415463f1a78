"""Long texts: truncate, chunk (one row per window) and average (one vector per text)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import write_shard
from output_utils import embed_output, shard_file, verify

from e5ray import E5Embedder
from e5ray.model.windows import WINDOW_COLUMNS, window_starts
from e5ray.testing import sample_words

MAX_LENGTH, STRIDE = 16, 4


@pytest.fixture(params=["bert", "xlmr"])
def model_dir(request, bert_model_dir, xlmr_model_dir):
    return bert_model_dir if request.param == "bert" else xlmr_model_dir


def make_embedder(model_dir, **kw) -> E5Embedder:
    kw.setdefault("max_length", MAX_LENGTH)
    kw.setdefault("stride", STRIDE)
    return E5Embedder(model="tiny-test", model_path=model_dir, threads=1, **kw)


def long_text(words: int, offset: int = 0) -> str:
    vocab = sample_words()
    return " ".join(vocab[(offset + 7 * i) % len(vocab)] for i in range(words))


def untruncated(embedder: E5Embedder, text: str, prefix: str = "passage: "):
    tokenizer = embedder.tokenizer.__class__.from_str(embedder.tokenizer.to_str())
    tokenizer.no_truncation()
    return tokenizer.encode(prefix + text), tokenizer.encode(prefix), tokenizer.encode(text, add_special_tokens=False)


def test_a_long_text_gives_overlapping_windows_with_their_spans(model_dir):
    embedder = make_embedder(model_dir)
    text = long_text(40)
    full, prefix_only, content = untruncated(embedder, text)
    head, tail = 1, 1  # [CLS] ... [SEP] / <s> ... </s>
    prefix_tokens = [i for i, (_, end) in enumerate(full.offsets[head:-tail]) if end <= len("passage: ")]
    n_prefix = len(prefix_tokens)
    n_content = len(full.ids) - head - tail - n_prefix
    capacity = MAX_LENGTH - head - tail - n_prefix
    expected = 1 + math.ceil((n_content - capacity) / (capacity - STRIDE))

    result = embedder.embed([text], long_text="chunk")
    w = result.windows
    assert w is not None and len(w) == expected == len(result.vectors) and w.documents == 1
    assert w.window.tolist() == list(range(expected))
    assert w.token_start.tolist() == [i * (capacity - STRIDE) for i in range(expected)]
    assert w.token_end.tolist() == [min(s + capacity, n_content) for s in w.token_start.tolist()]
    assert all(a - b == STRIDE for a, b in zip(w.token_end[:-1], w.token_start[1:], strict=False))
    body = full.ids[head + n_prefix : -tail]
    assert body == content.ids  # the text's tokens do not depend on the prefix before them
    tokens = embedder.tokenize([text], long_text="chunk")
    for row in range(expected):
        start, end = int(w.token_start[row]), int(w.token_end[row])
        assert tokens.ids[row] == full.ids[: head + n_prefix] + body[start:end] + full.ids[-tail:]
        assert len(tokens.ids[row]) <= MAX_LENGTH
        # the character span holds exactly the window's tokens
        piece = text[w.char_start[row] : w.char_end[row]]
        assert piece == piece.strip() and piece
        again = embedder.tokenizer.encode(piece, add_special_tokens=False).ids
        assert again == body[start:end]
    assert w.char_start[0] == 0 and w.char_end[-1] == len(text)


def test_window_zero_is_the_truncated_text(model_dir):
    embedder = make_embedder(model_dir)
    text = long_text(30, offset=3)
    truncated = embedder.embed([text], long_text="truncate")
    chunked = embedder.embed([text], long_text="chunk")
    assert truncated.truncated.tolist() == [True] and not chunked.truncated.any()
    assert embedder.tokenize([text]).ids[0] == embedder.tokenize([text], long_text="chunk").ids[0]
    np.testing.assert_array_equal(chunked.vectors[0], truncated.vectors[0])


def test_average_is_the_renormalised_token_weighted_mean_of_the_chunks(model_dir):
    embedder = make_embedder(model_dir)
    texts = [long_text(35), "short one", long_text(50, offset=5)]
    chunks = embedder.embed(texts, long_text="chunk")
    averaged = embedder.embed(texts, long_text="average")
    w = chunks.windows
    assert averaged.vectors.shape == (3, embedder.dim) and averaged.windows is not None
    for d in range(3):
        rows = np.flatnonzero(w.doc == d)
        weights = (w.token_end[rows] - w.token_start[rows]).astype(np.float64)
        mean = (chunks.vectors[rows].astype(np.float64) * weights[:, None]).sum(axis=0)
        np.testing.assert_allclose(averaged.vectors[d], mean / np.linalg.norm(mean), atol=1e-6)
    assert len(np.flatnonzero(w.doc == 0)) > 1  # really averaged something


def test_short_texts_are_identical_in_all_three_modes(model_dir):
    embedder = make_embedder(model_dir, max_length=64)
    texts = ["a b", long_text(8), long_text(20, offset=9), "query: already prefixed text"]
    tokens = {mode: embedder.tokenize(texts, long_text=mode) for mode in ("truncate", "chunk", "average")}
    assert tokens["truncate"].ids == tokens["chunk"].ids == tokens["average"].ids
    vectors = {mode: embedder.embed(texts, long_text=mode).vectors for mode in tokens}
    np.testing.assert_array_equal(vectors["truncate"], vectors["chunk"])
    np.testing.assert_array_equal(vectors["truncate"], vectors["average"])


def test_windows_of_all_texts_share_the_length_sorted_batches(bert_model_dir):
    embedder = make_embedder(bert_model_dir, token_budget=256)
    texts = [long_text(k, offset=k) for k in (5, 60, 12, 45, 3, 33)]
    together = embedder.embed(texts, long_text="chunk")
    assert together.batches < len(texts) < len(together.vectors)
    for d, text in enumerate(texts):
        alone = embedder.embed([text], long_text="chunk").vectors
        np.testing.assert_allclose(together.vectors[together.windows.doc == d], alone, atol=1e-5)


def test_spans_index_the_callers_text_when_it_carried_a_prefix(bert_model_dir):
    embedder = make_embedder(bert_model_dir)
    text = "passage: " + long_text(30)
    w = embedder.embed([text], long_text="chunk").windows
    assert w.char_start[0] == len("passage: ") and w.char_end[-1] == len(text)
    plain = embedder.embed([text.removeprefix("passage: ")], long_text="chunk").windows
    assert (w.char_start - plain.char_start).tolist() == [len("passage: ")] * len(w)


def test_mode_and_stride_are_part_of_the_space_and_validated(bert_model_dir):
    truncate = make_embedder(bert_model_dir)
    chunk = make_embedder(bert_model_dir, long_text="chunk")
    average = make_embedder(bert_model_dir, long_text="average", stride=2)
    assert (truncate.space.long_text, truncate.space.stride) == ("truncate", 0)
    assert (chunk.space.long_text, chunk.space.stride) == ("chunk", STRIDE)
    assert (average.space.long_text, average.space.stride) == ("average", 2)
    assert len({truncate.space.fingerprint, chunk.space.fingerprint, average.space.fingerprint}) == 3
    assert make_embedder(bert_model_dir, long_text="chunk", stride=None, max_length=512).space.stride == 64
    with pytest.raises(ValueError, match=r"unknown long-text mode 'split'; valid: truncate, chunk, average"):
        make_embedder(bert_model_dir, long_text="split")
    with pytest.raises(ValueError, match=r"stride 13 leaves no room.*use a stride below 12"):
        make_embedder(bert_model_dir, stride=13).embed([long_text(40)], long_text="chunk")
    with pytest.raises(ValueError, match=r"stride must be in 0\.\.15"):
        make_embedder(bert_model_dir, stride=-1)


def test_window_starts_cover_every_token():
    assert window_starts(5, 12, 4) == [0]
    assert window_starts(12, 12, 4) == [0]
    assert window_starts(13, 12, 4) == [0, 8]
    assert window_starts(30, 12, 0) == [0, 12, 24]


def test_the_job_writes_chunk_outputs_that_verify(tmp_path, bert_model_dir):
    ids = list(range(6))
    texts = [long_text(k, offset=k) for k in (4, 40, 9, 70, 2, 25)]
    write_shard(tmp_path / "in" / "part-0.parquet", ids, texts)
    # integer ids like part-0's: a version mixing id types is refused (test_rows.py)
    write_shard(tmp_path / "in" / "part-1.jsonl", [10, 11, 12], [long_text(50), None, "tiny"])
    out = tmp_path / "out"
    manifest = embed_output(
        tmp_path / "in", out, bert_model_dir, max_length=MAX_LENGTH, stride=STRIDE, long_text="chunk", chunk_rows=4
    )
    assert verify(out) == []
    assert manifest["space"]["long_text"] == "chunk" and manifest["space"]["stride"] == STRIDE
    embedder = make_embedder(bert_model_dir, long_text="chunk")
    total_rows = 0
    for shard in manifest["shards"]:
        table = pq.read_table(out / shard_file(shard))
        assert table.column_names == ["id", "embedding", *WINDOW_COLUMNS]
        assert shard["rows"] == table.num_rows == shard["windows"]
        assert shard["documents"] + shard["rejected"] == shard["input_rows"]
        got = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
        doc_ids = list(dict.fromkeys(table.column("id").to_pylist()))
        source = dict(zip(ids, texts, strict=True)) | {10: long_text(50), 12: "tiny"}
        want = embedder.embed([source[i] for i in doc_ids], long_text="chunk")
        assert table.column("id").to_pylist() == [doc_ids[d] for d in want.windows.doc]
        for name in WINDOW_COLUMNS:
            assert table.column(name).to_pylist() == getattr(want.windows, name).tolist()
        np.testing.assert_allclose(got, want.vectors, atol=1e-5)
        total_rows += table.num_rows
    assert manifest["totals"]["embedded"] == 8 and manifest["totals"]["rejected"] == 1
    assert manifest["totals"]["windows"] == total_rows > 8 and manifest["totals"]["truncated"] == 0


def test_the_job_writes_one_averaged_vector_per_text(tmp_path, bert_model_dir):
    texts = [long_text(k, offset=k) for k in (4, 40, 70)]
    write_shard(tmp_path / "in" / "part-0.parquet", [1, 2, 3], texts)
    out = tmp_path / "out"
    manifest = embed_output(
        tmp_path / "in", out, bert_model_dir, max_length=MAX_LENGTH, stride=STRIDE, long_text="average"
    )
    assert verify(out) == []
    (shard,) = manifest["shards"]
    table = pq.read_table(out / shard_file(shard))
    assert table.column_names == ["id", "embedding"] and table.num_rows == shard["rows"] == 3
    assert shard["windows"] > 3 and manifest["totals"]["embedded"] == 3
    want = make_embedder(bert_model_dir, long_text="average").embed(texts).vectors
    np.testing.assert_allclose(np.stack(table.column("embedding").to_numpy(zero_copy_only=False)), want, atol=1e-5)


def test_command_line_flags_reach_the_job_config():
    from e5ray.cli.app import build_parser, config_from_args

    args = build_parser().parse_args(
        ["embed", "--input", "in", "--output", "out", "--long-text", "average", "--stride", "32", "--pooling", "cls"]
    )
    config = config_from_args(args)
    assert (config.model.long_text, config.model.stride, config.model.pooling) == ("average", 32, "cls")
    defaults = config_from_args(build_parser().parse_args(["embed", "--input", "in", "--output", "out"]))
    assert (defaults.model.long_text, defaults.model.stride, defaults.model.pooling) == ("truncate", None, "mean")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["embed", "--input", "in", "--output", "out", "--long-text", "split"])
