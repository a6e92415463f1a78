"""Work units and the reliability checks together: ids files per unit, duplicates across
units of one file, row rules in byte ranges, and confined marker paths in the listing resume."""

from __future__ import annotations

import json

import pytest
from corpus_utils import embed_job, make_texts
from job_utils import config

from e5ray.errors import UnsafePathError
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

SMALL_UNITS = {"unit_tokens": 2000, "unit_rows": 30}


@pytest.fixture
def split_jsonl(tmp_path):
    """One JSONL file big enough for several byte-range units, with a BOM, an invalid UTF-8
    line, and id 7 repeated near the end (so in another unit than its first occurrence)."""
    inp = tmp_path / "in"
    inp.mkdir()
    lines = [json.dumps({"id": i, "text": t}).encode() for i, t in enumerate(make_texts(80, 3))]
    lines[20] = b'{"id": 20, "text": "bad \xff byte"}'
    lines[75] = json.dumps({"id": 7, "text": "the same id again"}).encode()
    (inp / "big.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    return inp


def test_an_id_repeated_in_another_unit_of_the_same_file_is_rejected_once(split_jsonl, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v1 = embed_job(config(split_jsonl, out, bert_model_dir, **SMALL_UNITS))
    units = [e for e in v1["shards"] if e["source"]["relpath"] == "big.jsonl"]
    assert len(units) > 1 and all(e["unit"]["kind"] == "bytes" for e in units)
    assert all(e["ids"] is not None and (out / e["ids"]["path"]).exists() for e in units)
    assert v1["totals"]["input_rows"] == 80  # the BOM is not a row of its own, nor a broken first row
    assert v1["totals"]["rejected"] == 2  # the invalid byte, and the second id 7
    reasons = [
        json.loads(line)["reason"]
        for e in units
        if e["rejects"]
        for line in (out / e["rejects"]["path"]).read_text().splitlines()
    ]
    assert sum("duplicate id" in r for r in reasons) == 1 and len(reasons) == 2
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []


def test_a_missing_ids_file_of_a_unit_is_a_verify_problem_even_in_quick_mode(split_jsonl, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v1 = embed_job(config(split_jsonl, out, bert_model_dir, **SMALL_UNITS))
    ids_path = v1["shards"][0]["ids"]["path"]
    (out / ids_path).unlink()
    for quick in (False, True):
        assert any(ids_path in p and "missing" in p for p in verify_output(OutputDir(str(out)), quick=quick))


def test_a_unit_marker_naming_a_path_outside_the_output_is_refused_on_resume(split_jsonl, tmp_path, bert_model_dir):
    out = tmp_path / "out"
    v1 = embed_job(config(split_jsonl, out, bert_model_dir, **SMALL_UNITS))
    markers = sorted((out / "markers").glob("*.done.json"))
    assert len(markers) == len(v1["shards"])
    data = json.loads(markers[0].read_text())
    data["files"][0]["path"] = "../../etc/passwd"
    markers[0].write_text(json.dumps(data))
    with pytest.raises(UnsafePathError):
        embed_job(config(split_jsonl, out, bert_model_dir, full=True, **SMALL_UNITS))
