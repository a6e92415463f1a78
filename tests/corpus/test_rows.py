"""Row-level input cases: invalid Unicode, ids beyond int64, a BOM, JSON array files, id types.

Each case is decided per row with a reason (never a failed shard, never a silent change),
and an output always reads back as one table.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, write_shard

from e5ray.config import JobConfig
from e5ray.errors import MixedIdTypesError
from e5ray.job.run import run_job
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    return JobConfig.from_options(
        input=str(inp), output=str(out), model="tiny", model_path=str(model_dir), executor="local", **kw
    )


def rejects(out: Any, entry: dict[str, Any]) -> list[dict[str, Any]]:
    if not entry["rejects"]:
        return []
    return [json.loads(line) for line in (out / entry["rejects"]["path"]).read_text().splitlines()]


def read_back(out: Any, manifest: dict[str, Any]) -> list[Any]:
    """The README's snippet: every shard as one table."""
    table = pq.read_table([str(out / f["path"]) for s in manifest["shards"] for f in s["files"]])
    return table["id"].to_pylist()


def test_invalid_utf8_and_lone_surrogates_are_rejected_per_row_with_the_reason(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.jsonl").write_bytes(
        b'{"id": 1, "text": "fine"}\n'
        b'{"id": 2, "text": "bad \xff byte"}\n'
        b'{"id": 3, "text": "lone \\ud800 surrogate"}\n'
        b'{"id": 4, "text": "a pair \\ud83d\\ude00 is fine"}\n'
        b'{"id": 5, "text": "also fine"}\n'
    )
    manifest = embed_job(config(inp, out, bert_model_dir))
    (entry,) = manifest["shards"]
    assert (entry["input_rows"], entry["rows"], entry["rejected"]) == (5, 3, 2)
    reasons = {r["id"]: r["reason"] for r in rejects(out, entry)}
    assert reasons[2].startswith("text is not valid Unicode: invalid UTF-8 byte 0xff at character 4")
    assert reasons[3].startswith("text is not valid Unicode: lone surrogate U+D800 at character 5")
    assert sorted(read_back(out, manifest)) == [1, 4, 5]
    assert verify_output(OutputDir(str(out))) == []


def test_replace_embeds_invalid_text_with_replacement_characters(tmp_path, bert_model_dir):
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "a.jsonl").write_bytes(b'{"id": 1, "text": "bad \xff byte"}\n{"id": 2, "text": "lone \\udc00"}\n')
    manifest = embed_job(config(inp, tmp_path / "out", bert_model_dir, on_invalid_utf8="replace"))
    assert (manifest["totals"]["embedded"], manifest["totals"]["rejected"]) == (2, 0)
    # the policy is part of the shard's key: switching it embeds the shard again
    again = embed_job(config(inp, tmp_path / "out", bert_model_dir))
    assert again["run"]["embedded_shards"] == 1 and again["totals"]["rejected"] == 2


def test_ids_outside_int64_are_rejected_per_row(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    big = 2**63
    (inp / "a.jsonl").write_text(
        f'{{"id": 1, "text": "one"}}\n{{"id": {big}, "text": "too big"}}\n'
        f'{{"id": {-big - 1}, "text": "too small"}}\n{{"id": {big - 1}, "text": "the largest"}}\n'
    )
    manifest = embed_job(config(inp, out, bert_model_dir))
    (entry,) = manifest["shards"]
    assert (entry["rows"], entry["rejected"]) == (2, 2)
    assert all("outside the int64 range" in r["reason"] for r in rejects(out, entry))
    assert sorted(read_back(out, manifest)) == [1, big - 1]
    # as strings they fit
    as_text = embed_job(config(inp, tmp_path / "out2", bert_model_dir, id_type="string"))
    assert sorted(read_back(tmp_path / "out2", as_text)) == sorted(["1", str(big), str(-big - 1), str(big - 1)])


def test_a_utf8_bom_does_not_cost_the_first_row(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.jsonl").write_bytes(b'\xef\xbb\xbf{"id": 1, "text": "first"}\n{"id": 2, "text": "second"}\n')
    manifest = embed_job(config(inp, out, bert_model_dir))
    assert (manifest["totals"]["embedded"], manifest["totals"]["rejected"]) == (2, 0)


def test_a_json_file_holding_one_array_is_read_as_records(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    records = [{"id": 1, "text": "one"}, {"id": 2, "text": "two"}, "not an object", {"id": 3, "text": None}]
    (inp / "export.json").write_text(json.dumps(records, indent=2))
    manifest = embed_job(config(inp, out, bert_model_dir))
    (entry,) = manifest["shards"]
    assert (entry["input_rows"], entry["rows"], entry["rejected"]) == (4, 2, 2)
    assert [r["row"] for r in rejects(out, entry)] == [2, 3]


def test_ids_of_mixed_types_across_shards_are_refused_before_commit(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2], ["one", "two"])
    write_shard(inp / "b.jsonl", ["x", "y"], ["ex", "why"])
    with pytest.raises(MixedIdTypesError, match=r"a\.parquet has int64 ids; .*b\.jsonl has string ids"):
        run_job(config(inp, out, bert_model_dir))
    assert not (out / "manifest.json").exists()


def test_id_type_string_makes_mixed_shards_one_table(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2], ["one", "two"])
    write_shard(inp / "b.jsonl", ["x", "2"], ["ex", "two again"])
    manifest = embed_job(config(inp, out, bert_model_dir, id_type="string"))
    # 2 and "2" are one id as text: the later shard's row is a duplicate
    assert sorted(read_back(out, manifest)) == ["1", "2", "x"]
    assert manifest["totals"]["duplicates"] == 1 and verify_output(OutputDir(str(out))) == []


def test_a_row_reusing_refresh_applies_the_row_rules_and_the_cross_shard_id_check(tmp_path, bert_model_dir):
    """The row-reusing path (--reuse rows, the default for a changed shard) reads through the
    same validated chunks: per-row rejects, an ids file in ids/, duplicates across shards."""
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / "a.jsonl").write_text('{"id": 1, "text": "one"}\n{"id": 2, "text": "two"}\n')
    (inp / "b.jsonl").write_text('{"id": 3, "text": "three"}\n')
    embed_job(config(inp, out, bert_model_dir, keep_columns=("lang",)))
    (inp / "b.jsonl").write_bytes(
        b'{"id": 3, "text": "three", "lang": "en"}\n'  # held by the output: reused
        b'{"id": 4, "text": "bad \xff byte"}\n'
        b'{"id": 5, "text": "lone \\ud800 surrogate"}\n'
        b'{"id": 36893488147419103232, "text": "too big"}\n'
        b'{"id": 1, "text": "a.jsonl has this id"}\n'
        b'{"id": 6, "text": "two", "lang": "en"}\n'  # a's text under another id: reused
    )
    manifest = embed_job(config(inp, out, bert_model_dir, keep_columns=("lang",)))
    b = next(s for s in manifest["shards"] if s["source"]["relpath"] == "b.jsonl")
    assert b["reuse"]["rows_reused"] == 2 and manifest["run"]["embedded_shards"] == 1
    reasons = {r["id"]: r["reason"] for r in rejects(out, b)}
    assert reasons[4].startswith("text is not valid Unicode: invalid UTF-8 byte 0xff")
    assert reasons[5].startswith("text is not valid Unicode: lone surrogate U+D800")
    assert "outside the int64 range" in reasons[36893488147419103232]
    assert reasons[1].startswith("duplicate id: kept in ") and "a.jsonl" in reasons[1]
    assert (b["input_rows"], b["rows"], b["rejected"], b["duplicates"]) == (6, 2, 4, 1)
    assert b["ids"]["path"].startswith("ids/") and b["rejects"]["path"].startswith("rejects/")
    table = pq.read_table(out / b["files"][0]["path"])
    assert table["id"].to_pylist() == [3, 6] and table["lang"].to_pylist() == ["en", "en"]
    assert sorted(read_back(out, manifest)) == [1, 2, 3, 6]
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []
