"""A job whose big files are split into work units: exactly once, resumable without reading outputs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output, write_shard
from job_utils import Killed, assert_same_vectors, config, dying

from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

SMALL_UNITS = {"unit_tokens": 2000, "unit_rows": 30}


@pytest.fixture
def mixed_corpus(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    pq.write_table(
        pa.table({"id": list(range(120)), "text": make_texts(120, 1)}), inp / "big.parquet", row_group_size=10
    )
    lines = [json.dumps({"id": 1000 + i, "text": t}) for i, t in enumerate(make_texts(80, 2))]
    lines.insert(40, "{broken")
    (inp / "big.jsonl").write_text("\n".join(lines) + "\n")
    for s in range(4):
        write_shard(inp / f"small-{s}.parquet", [5000 + 10 * s + i for i in range(3)], make_texts(3, 10 + s))
    return inp


def test_big_files_are_split_into_units_and_every_row_is_embedded_once(mixed_corpus, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v1 = embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS))
    units = {}
    for e in v1["shards"]:
        units.setdefault(e["source"]["relpath"], []).append(e["unit"])
    assert len(units["big.parquet"]) == 4 and {u["kind"] for u in units["big.parquet"]} == {"rows"}
    assert len(units["big.jsonl"]) > 1 and {u["kind"] for u in units["big.jsonl"]} == {"bytes"}
    assert units["small-0.parquet"] == [None]
    assert v1["totals"]["embedded"] == 120 + 80 + 12 and v1["totals"]["rejected"] == 1
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []

    (rejected,) = [e for e in v1["shards"] if e["rejected"]]
    (reject,) = [json.loads(x) for x in (out / rejected["rejects"]["path"]).read_text().splitlines()]
    data = (mixed_corpus / "big.jsonl").read_bytes()
    assert data[reject["offset"] :].startswith(b"{broken") and "malformed JSON" in reject["reason"]

    whole = embed_job(config(mixed_corpus, tmp_path / "whole", bert_model_dir))
    assert all(e["unit"] is None for e in whole["shards"])
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "whole")))


def test_a_killed_run_resumes_its_finished_units_without_reading_any_output(
    mixed_corpus, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS), executor=dying(5))
    assert len(list((out / "markers").glob("*.done.json"))) == 5

    def no_download(self, rel):
        raise AssertionError(f"resume read the output file {rel}")

    monkeypatch.setattr(OutputDir, "sha256", no_download)
    v = embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS))
    assert v["run"]["reused_shards"] == 5 and v["run"]["embedded_shards"] == len(v["shards"]) - 5
    monkeypatch.undo()
    assert verify_output(OutputDir(str(out))) == []
    ids = sorted(read_output(str(out)))
    assert ids == sorted([*range(120), *range(1000, 1080), *(5000 + 10 * s + i for s in range(4) for i in range(3))])


def test_units_of_an_output_that_keeps_its_markers_in_shards_resume_from_the_listing(
    mixed_corpus, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS), executor=dying(3))
    for marker in (out / "markers").glob("*.done.json"):  # the layout before markers/ existed
        marker.rename(out / "shards" / marker.name)

    def no_download(self, rel):
        raise AssertionError(f"resume read the output file {rel}")

    monkeypatch.setattr(OutputDir, "sha256", no_download)
    v = embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS))
    assert v["run"]["reused_shards"] == 3 and v["run"]["embedded_shards"] == len(v["shards"]) - 3
    monkeypatch.undo()
    assert verify_output(OutputDir(str(out))) == []


def test_a_unit_output_rewritten_since_its_marker_is_embedded_again(mixed_corpus, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS), executor=dying(2))
    marker = json.loads(sorted((out / "markers").glob("*.done.json"))[0].read_bytes())
    damaged = out / marker["files"][0]["path"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, new content: the listing's stamp tells
    damaged.write_bytes(bytes(data))
    v = embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS))
    assert v["run"]["reused_shards"] == 1
    assert verify_output(OutputDir(str(out))) == []


def test_quick_verify_finds_a_missing_or_truncated_unit_from_the_listing_alone(mixed_corpus, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v = embed_job(config(mixed_corpus, out, bert_model_dir, **SMALL_UNITS))
    first, second = v["shards"][0]["files"][0]["path"], v["shards"][1]["files"][0]["path"]
    (out / first).unlink()
    (out / second).write_bytes((out / second).read_bytes()[:-10])
    problems = verify_output(OutputDir(str(out)), quick=True)
    assert f"{first}: missing" in problems and any(p.startswith(f"{second}: ") and "bytes" in p for p in problems)


@pytest.mark.parametrize("long_text", ["truncate", "chunk"])
def test_units_keep_their_columns_and_say_which_part_of_the_file_they_hold(
    mixed_corpus, tmp_path, bert_model_dir, long_text
):
    out = tmp_path / "out"
    cfg = config(
        mixed_corpus, out, bert_model_dir, keep_columns=("text",), long_text=long_text, max_length=16, **SMALL_UNITS
    )
    v = embed_job(cfg)
    texts = {i: t for i, t in enumerate(make_texts(120, 1))}
    texts.update({1000 + i: t for i, t in enumerate(make_texts(80, 2))})
    split = [e for e in v["shards"] if e["unit"] is not None]
    assert {e["source"]["relpath"] for e in split} == {"big.parquet", "big.jsonl"}
    windows = 0
    for entry in split:
        table = pq.read_table(out / entry["files"][0]["path"])
        source = json.loads(table.schema.metadata[b"e5ray.source"])
        assert source["unit"] == entry["unit"] and source["uri"] == entry["source"]["uri"]
        assert b"e5ray.space" in table.schema.metadata
        rows = table.select(["id", "text"]).to_pylist()
        assert rows and all(r["text"] == texts[r["id"]] for r in rows)  # every window of a text carries it
        windows += len(rows) - len({r["id"] for r in rows})
    assert (windows > 0) == (long_text == "chunk")
    assert verify_output(OutputDir(str(out))) == []
