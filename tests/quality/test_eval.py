"""`e5ray eval`: data loading, variants, an end-to-end run on the shipped pairs."""

import json
import unicodedata
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import e5ray
import e5ray.quality.eval as eval_module
from e5ray.cli.app import main
from e5ray.model.embedder import E5Embedder
from e5ray.quality.eval import Variant, parse_variant, rank_pool, run_eval
from e5ray.quality.evaldata import load_beir, load_eval_set, load_pairs
from e5ray.quality.metrics import METRICS

# ---------------------------------------------------------------------------
# variants


def test_a_variant_string_becomes_its_settings():
    variant = parse_variant("pooling=cls, prefix=off,max-length=128")
    assert variant.name == "pooling=cls, prefix=off,max-length=128"
    assert variant.options == {"pooling": "cls", "prefix": "off", "max_length": 128}
    assert parse_variant("").options == {} and parse_variant("").name == "default"


@pytest.mark.parametrize(
    "text,message",
    [
        ("pooling=max", "valid: mean, cls"),
        ("colour=red", "KEY one of pooling, prefix, precision, max_length, long_text"),
        ("max_length=abc", "integer >= 2"),
        ("prefix=on,prefix=off", "twice"),
        ("pooling", "KEY=VALUE"),
    ],
)
def test_a_bad_variant_is_refused_with_the_valid_choices(text, message):
    with pytest.raises(ValueError, match=message):
        parse_variant(text)


def test_a_variant_the_embedder_cannot_build_fails_clearly(monkeypatch, bert_model_dir):
    monkeypatch.setattr(eval_module, "_embedder_supports", lambda name: False)
    with pytest.raises(ValueError, match="has no pooling= option"):
        eval_module.build_embedder(parse_variant("pooling=cls"), {"model": "t", "model_path": str(bert_model_dir)})


# ---------------------------------------------------------------------------
# data


def test_the_shipped_pairs_are_multilingual_cross_lingual_and_unambiguous():
    shipped = Path(e5ray.__file__).parent / "data" / "pairs.jsonl"
    rows = [json.loads(line) for line in shipped.read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 300
    languages = Counter(r["query_lang"] for r in rows) + Counter(r["passage_lang"] for r in rows)
    assert len(languages) >= 8 and all(count >= 20 for count in languages.values())
    scripts = {unicodedata.name(ch).split()[0] for r in rows for ch in r["passage"] if ch.isalpha()}
    assert {"LATIN", "CYRILLIC", "CJK", "HIRAGANA", "ARABIC", "DEVANAGARI", "GREEK", "HANGUL"} <= scripts
    assert sum(r["query_lang"] != r["passage_lang"] for r in rows) >= 30
    assert len({r["qid"] for r in rows}) == len(rows)  # one judged passage per query
    texts = {}
    for r in rows:
        assert texts.setdefault(r["pid"], r["passage"]) == r["passage"]
    assert len(set(texts.values())) == len(texts)  # no passage twice under two ids
    evalset = load_eval_set()
    assert len(evalset.queries) == len(rows) and len(evalset.passages) == len(texts)


def test_pairs_files_in_jsonl_and_parquet_read_the_same(tmp_path):
    rows = [
        {"qid": "a", "query": "q a", "pid": "1", "passage": "p one", "relevance": 2},
        {"qid": "a", "query": "q a", "pid": "2", "passage": "p two", "relevance": 1},
        {"qid": "b", "query": "q b", "pid": "2", "passage": "p two", "relevance": 3},
        {"qid": "c", "query": "q c", "pid": "3", "passage": "p three", "relevance": 0},  # pool only
    ]
    (tmp_path / "pairs.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "pairs.parquet")
    for name in ("pairs.jsonl", "pairs.parquet"):
        evalset = load_pairs(tmp_path / name)
        assert evalset.queries == ["q a", "q b"]
        assert evalset.passages == ["p one", "p two", "p three"]
        assert evalset.judgments == [{0: 2.0, 1: 1.0}, {1: 3.0}]
        assert evalset.dropped_queries == 1


def test_pairs_without_ids_are_keyed_by_text_and_default_to_relevance_one(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "x", "passage": "A"}\n{"query": "y", "passage": "A"}\n{"query": "x", "passage": "B"}\n')
    evalset = load_pairs(path)
    assert evalset.queries == ["x", "y"] and evalset.passages == ["A", "B"]
    assert evalset.judgments == [{0: 1.0, 1: 1.0}, {0: 1.0}]


def test_a_pairs_file_without_a_passage_column_names_what_is_missing(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"query": "x", "text": "A"}\n')
    with pytest.raises(ValueError, match=r"lacks a non-empty passage .*columns present: \['query', 'text'\]"):
        load_pairs(path)


def test_the_beir_layout_is_read_with_titles_grades_and_its_split(tmp_path):
    (tmp_path / "qrels").mkdir()
    corpus = [
        {"_id": "d1", "title": "Rhine", "text": "A river."},
        {"_id": "d2", "title": "", "text": "No title here."},
        {"_id": "d3", "text": "Never judged."},
    ]
    (tmp_path / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus) + "\n")
    queries = [{"_id": "q1", "text": "river?"}, {"_id": "q2", "text": "title?"}, {"_id": "q3", "text": "unjudged"}]
    (tmp_path / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    (tmp_path / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t2\nq1\td2\t1\nq2\td2\t1\n")
    (tmp_path / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    evalset = load_beir(tmp_path)
    assert evalset.passage_ids == ["d1", "d2", "d3"]
    assert evalset.passages == ["Rhine A river.", "No title here.", "Never judged."]
    assert evalset.query_ids == ["q1", "q2"] and evalset.queries == ["river?", "title?"]
    assert evalset.judgments == [{0: 2.0, 1: 1.0}, {1: 1.0}]
    assert load_eval_set(tmp_path, split="dev").query_ids == ["q3"]
    with pytest.raises(FileNotFoundError, match=r"qrels splits present: \['dev', 'test'\]"):
        load_beir(tmp_path, split="train")


# ---------------------------------------------------------------------------
# ranking and the whole run


def test_chunked_passages_score_their_best_window():
    queries = np.array([[1.0, 0.0], [0.0, 1.0]], dtype=np.float32)
    rows = np.array([[0.1, 0.9], [0.8, 0.2], [0.6, 0.4], [0.0, 1.0]], dtype=np.float32)
    doc = np.array([0, 0, 1, 2])  # passage 0 has two windows
    ranking = rank_pool(queries, rows, 3, doc)
    assert ranking.tolist() == [[0, 1, 2], [2, 0, 1]]


def test_eval_on_the_shipped_pairs_equals_an_independent_computation_and_writes_json_and_png(bert_model_dir, tmp_path):
    out_json, out_png = tmp_path / "report.json", tmp_path / "chart.png"
    code = main(
        [
            "eval",
            "--model",
            "test-bert",
            "--model-path",
            str(bert_model_dir),
            "--variant",
            "pooling=mean",
            "--variant",
            "prefix=off",
            "--variant",
            "max_length=16",
            "--resamples",
            "200",
            "--json-out",
            str(out_json),
            "--chart-out",
            str(out_png),
        ]
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    assert [v["name"] for v in report["variants"]] == ["pooling=mean", "prefix=off", "max_length=16"]
    assert report["data"]["queries"] >= 300 and len(report["data"]["query_languages"]) >= 8
    assert "vs_first" not in report["variants"][0]
    for variant in report["variants"]:
        for name in METRICS:
            m = variant["metrics"][name]
            assert m["low"] <= m["value"] <= m["high"]
    for name in METRICS:
        d = report["variants"][1]["vs_first"][name]
        assert d["low"] <= d["diff"] <= d["high"]
    assert report["variants"][2]["space"]["max_length"] == 16
    assert report["variants"][2]["truncated_passages"] > 0

    # Independently: embed with E5Embedder, find each positive's rank with a full argsort.
    evalset = load_eval_set()
    embedder = E5Embedder("test-bert", model_path=bert_model_dir)
    scores = embedder.embed_queries(evalset.queries) @ embedder.embed_passages(evalset.passages).T
    positive = np.array([next(iter(j)) for j in evalset.judgments])
    rank = 1 + (scores > scores[np.arange(len(positive)), positive][:, None]).sum(axis=1)
    first = report["variants"][0]["metrics"]
    assert first["recall@1"]["value"] == pytest.approx(np.mean(rank <= 1))
    assert first["recall@10"]["value"] == pytest.approx(np.mean(rank <= 10))
    assert first["mrr@10"]["value"] == pytest.approx(np.mean(np.where(rank <= 10, 1 / rank, 0)))
    assert first["ndcg@10"]["value"] == pytest.approx(np.mean(np.where(rank <= 10, 1 / np.log2(rank + 1), 0)))

    png = out_png.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    height, width, _ = matplotlib.image.imread(out_png).shape
    assert width > 800 and height > 300


def test_two_identical_variants_differ_by_exactly_zero(bert_model_dir):
    evalset = load_eval_set()
    evalset.queries, evalset.judgments = evalset.queries[:60], evalset.judgments[:60]
    variants = [Variant("a", ()), Variant("b", (("prefix", "on"),))]
    report = run_eval(evalset, variants, {"model": "t", "model_path": str(bert_model_dir)}, resamples=100)
    for name in METRICS:
        assert report["variants"][1]["vs_first"][name] == {"diff": 0.0, "low": 0.0, "high": 0.0}
