"""`e5ray search`: streamed top-k over an output, equal to a brute-force numpy search."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
from corpus_utils import read_output, write_corpus, write_shard
from output_utils import embed_output

from e5ray import E5Embedder
from e5ray.cli.app import main as cli_main
from e5ray.errors import SpaceMismatchError, UsageError
from e5ray.quality.search import TopK, search_output
from e5ray.testing import write_test_model


@pytest.fixture(scope="module")
def output(tmp_path_factory, bert_model_dir):
    """An output of 6 shards, 45 rows each, and its corpus (id -> text)."""
    root = tmp_path_factory.mktemp("search")
    corpus = write_corpus(root / "in", shards=6, rows=45, seed=4)
    embed_output(root / "in", root / "out", bert_model_dir)
    return root, corpus


def brute_force(out, query: np.ndarray, k: int) -> list[tuple[object, float]]:
    vectors = read_output(str(out))
    ids = list(vectors)
    scores = np.stack([vectors[i] for i in ids]) @ query
    order = np.argsort(-scores, kind="stable")[:k]
    return [(ids[i], float(scores[i])) for i in order]


def test_streamed_search_equals_brute_force_reading_bounded_batches(output, bert_model_dir, monkeypatch):
    root, _ = output
    sizes: list[int] = []
    original = pq.ParquetFile.iter_batches

    def spy(self, batch_size=65536, **kw):
        for batch in original(self, batch_size=batch_size, **kw):
            sizes.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", spy)
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: pytest.fail("search must not load whole tables"))
    result = search_output(str(root / "out"), "the a of passage", k=7, model_path=bert_model_dir, batch_rows=8)
    monkeypatch.undo()

    query = E5Embedder("tiny", model_path=bert_model_dir, threads=1).embed_queries(["the a of passage"])[0]
    want = brute_force(root / "out", query, 7)
    assert [h.id for h in result.hits] == [i for i, _ in want]
    np.testing.assert_allclose([h.score for h in result.hits], [s for _, s in want], atol=1e-5)
    assert result.stats.rows == 270 and result.stats.shards == 6
    assert max(sizes) == result.stats.max_batch_rows == 8 and len(sizes) == result.stats.batches >= 270 // 8
    assert all(h.shard.startswith("shards/") and h.source.startswith("part-") for h in result.hits)


@pytest.mark.parametrize("k", [1, 5, 300])
def test_top_k_keeps_the_best_rows_across_batches_and_breaks_ties_by_order(k):
    rng = np.random.default_rng(k)
    scores = np.round(rng.normal(size=250), 1).astype(np.float32)  # many ties
    top = TopK(k)
    for start in range(0, 250, 17):
        part = scores[start : start + 17]
        top.offer(part, start, lambda i, start=start: start + i)
    want = np.lexsort((np.arange(250), -scores))[:k]
    assert top.items == want.tolist()
    np.testing.assert_array_equal(top.scores, scores[want])


def test_texts_of_the_hits_come_from_the_corpus(output, bert_model_dir, capsys):
    root, corpus = output
    result = search_output(str(root / "out"), "query", k=3, model_path=bert_model_dir, input_uri=str(root / "in"))
    assert all(h.text == corpus[h.id] for h in result.hits) and result.notes == []
    code = cli_main(
        ["search", str(root / "out"), "some words", "-k", "4", "--model-path", str(bert_model_dir)]
        + ["--input", str(root / "in"), "--width", "30"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert code == 0 and len(lines) == 5 and lines[-1].startswith("# 270 rows in 6 shards")
    rank, score, hit_id, *text = lines[0].split()
    assert rank == "1" and -1 <= float(score) <= 1 and int(hit_id) in corpus and text


def test_a_query_vector_can_be_given_instead_of_a_text(output):
    root, _ = output
    vectors = read_output(str(root / "out"))
    some_id = sorted(vectors)[17]
    result = search_output(str(root / "out"), vectors[some_id], k=1)
    assert result.hits[0].id == some_id and result.hits[0].score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match=r"shape \(3,\).*32 dims"):
        search_output(str(root / "out"), np.ones(3), k=1)


def test_search_in_chunk_outputs_returns_windows_and_their_text(tmp_path, bert_model_dir):
    words = "the a of and passage query".split()
    long_doc = " ".join(words[i % 6] for i in range(60))
    write_shard(tmp_path / "in" / "docs.jsonl", ["long", "short"], [long_doc, "query passage"])
    write_shard(tmp_path / "in" / "rejected.jsonl", ["gone"], [None])  # an empty output shard
    embed_output(tmp_path / "in", tmp_path / "out", bert_model_dir, long_text="chunk", max_length=16, stride=4)
    result = search_output(
        str(tmp_path / "out"), "the a of", k=20, model_path=bert_model_dir, input_uri=str(tmp_path / "in")
    )
    windows = [h for h in result.hits if h.id == "long"]
    assert len(windows) > 3 and len(result.hits) == len(windows) + 1 and result.stats.shards == 2
    for hit in windows:
        w = hit.window
        assert hit.text == long_doc[w["char_start"] : w["char_end"]]


def test_search_refuses_a_model_that_is_not_the_outputs(output, tmp_path):
    root, _ = output
    other = write_test_model(tmp_path / "other", arch="bert", seed=99)
    with pytest.raises(SpaceMismatchError, match="model_sha256"):
        search_output(str(root / "out"), "x", model_path=other)
    with pytest.raises(UsageError, match="no manifest"):
        search_output(str(tmp_path), "x", model_path=other)


def test_search_streams_an_output_on_s3_and_reads_texts_from_s3(s3_server, s3_bucket, s3_env, bert_model_dir):
    fs = s3_server.filesystem()
    corpus = write_corpus(f"{s3_bucket}/corpus", shards=2, rows=15, fs=fs)
    embed_output(f"s3://{s3_bucket}/corpus", f"s3://{s3_bucket}/out", bert_model_dir, long_text="chunk", max_length=24)
    result = search_output(
        f"s3://{s3_bucket}/out", "the a of", k=4, model_path=bert_model_dir, input_uri=f"s3://{s3_bucket}/corpus"
    )
    assert len(result.hits) == 4 and result.stats.shards == 2 and result.notes == []
    for hit in result.hits:
        w = hit.window
        assert hit.text == corpus[hit.id][w["char_start"] : w["char_end"]]
