"""A Parquet file of one big row group is embedded as row slices: exactly once, resumable,
row-level reuse unchanged, and rejects that name the row of the file (in process, tiny model)."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, make_texts, read_output
from job_utils import Killed, assert_same_vectors, config, dying

from e5ray.model.embedder import E5Embedder
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

ROWS = 120
# 30 rows a unit; the token target is low enough that the footer of a ~15 KB file is read
# (e5ray.corpus.units.needs_footer) and high enough that rows, not bytes, close a slice.
SLICED = {"unit_tokens": 20_000, "unit_rows": 30}
BAD_ROW = 77


def write_one_group(path, texts: list[str | None]) -> None:
    table = pa.table({"id": list(range(len(texts))), "text": texts})
    pq.write_table(table, path)  # pyarrow's default: one row group of up to 1,048,576 rows
    assert pq.ParquetFile(path).num_row_groups == 1


@pytest.fixture
def one_group(tmp_path):
    inp = tmp_path / "in"
    inp.mkdir()
    texts: list[str | None] = list(make_texts(ROWS, 7))
    texts[BAD_ROW] = None
    write_one_group(inp / "export.parquet", texts)
    return inp


def slices_of(manifest):
    return [e["unit"] for e in manifest["shards"]]


def test_a_one_group_file_of_n_rows_becomes_ceil_n_over_the_row_target_slices_that_embed_every_id_once(
    one_group, tmp_path, bert_model_dir
):
    out = tmp_path / "out"
    v1 = embed_job(config(one_group, out, bert_model_dir, **SLICED))
    units = slices_of(v1)
    assert len(units) == math.ceil(ROWS / SLICED["unit_rows"]) and {u["kind"] for u in units} == {"slice"}
    assert sorted((u["start"], u["stop"]) for u in units) == [(0, 30), (30, 60), (60, 90), (90, 120)]
    assert any("-r30-60-" in e["files"][0]["path"] for e in v1["shards"])  # the slice is in the file name
    assert v1["totals"]["embedded"] == ROWS - 1 and v1["totals"]["rejected"] == 1
    assert sorted(read_output(str(out))) == sorted(set(range(ROWS)) - {BAD_ROW})
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []
    whole = embed_job(config(one_group, tmp_path / "whole", bert_model_dir))
    assert [e["unit"] for e in whole["shards"]] == [None]
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "whole")))


def test_a_rejected_row_of_a_slice_is_named_by_its_row_number_in_the_file(one_group, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v1 = embed_job(config(one_group, out, bert_model_dir, **SLICED))
    (entry,) = [e for e in v1["shards"] if e["rejected"]]
    assert entry["unit"]["start"] <= BAD_ROW < entry["unit"]["stop"]
    (reject,) = [json.loads(x) for x in (out / entry["rejects"]["path"]).read_text().splitlines()]
    assert (reject["row"], reject["id"], reject["reason"]) == (BAD_ROW, BAD_ROW, "null text")


def test_a_run_killed_mid_file_resumes_and_reuses_the_slices_it_finished(
    one_group, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    with pytest.raises(Killed):
        embed_job(config(one_group, out, bert_model_dir, **SLICED), executor=dying(2))
    assert len(list((out / "markers").glob("*-r*.done.json"))) == 2

    def no_download(self, rel):
        raise AssertionError(f"resume read the output file {rel}")

    monkeypatch.setattr(OutputDir, "sha256", no_download)
    v = embed_job(config(one_group, out, bert_model_dir, **SLICED))
    assert v["run"]["reused_shards"] == 2 and v["run"]["embedded_shards"] == 2
    monkeypatch.undo()
    assert verify_output(OutputDir(str(out))) == []
    assert sorted(read_output(str(out))) == sorted(set(range(ROWS)) - {BAD_ROW})


def test_a_refresh_of_a_rewritten_one_group_file_embeds_only_its_edited_rows(
    one_group, tmp_path, bert_model_dir, monkeypatch
):
    out = tmp_path / "out"
    embed_job(config(one_group, out, bert_model_dir, **SLICED))
    texts = pq.read_table(one_group / "export.parquet").column("text").to_pylist()
    texts[5], texts[100] = "an edited text", "another edited text"
    write_one_group(one_group / "export.parquet", texts)
    to_model: list[int] = []
    original = E5Embedder.run

    def counting(self, tokens):
        to_model.append(len(tokens))
        return original(self, tokens)

    monkeypatch.setattr(E5Embedder, "run", counting)
    v2 = embed_job(config(one_group, out, bert_model_dir, **SLICED))
    assert sum(to_model) == 2 and {u["kind"] for u in slices_of(v2)} == {"slice"}
    assert (v2["run"]["reuse"]["rows_embedded"], v2["run"]["reuse"]["rows_reused"]) == (2, ROWS - 3)
    monkeypatch.undo()
    fresh = tmp_path / "fresh"
    embed_job(config(one_group, fresh, bert_model_dir))
    assert_same_vectors(read_output(str(out)), read_output(str(fresh)))
    assert verify_output(OutputDir(str(out))) == []
