"""The libraries that can move vectors are on record in every version, and a refresh says
when they changed (e5ray.model.library_versions)."""

from __future__ import annotations

import hashlib
import json
import logging
from importlib.metadata import version
from pathlib import Path

import pyarrow.parquet as pq
from corpus_utils import embed_job, write_corpus
from job_utils import config

import e5ray.job.run
from e5ray.model.library_versions import changed_libraries, library_versions

REPO = Path(__file__).resolve().parents[2]


def test_the_recorded_versions_are_the_installed_ones_and_the_lock_hash():
    found = library_versions()
    assert found["onnxruntime"] == version("onnxruntime")
    assert found["tokenizers"] == version("tokenizers")
    assert found["lock"] == hashlib.sha256((REPO / "constraints.txt").read_bytes()).hexdigest()[:16]


def test_changes_name_each_library_with_both_versions():
    before = {"onnxruntime": "1.31.0", "tokenizers": "0.23.3", "lock": "aaaa"}
    after = {"onnxruntime": "1.32.0", "tokenizers": "0.23.3", "lock": "bbbb", "numpy": "2.4.6"}
    assert changed_libraries(before, after) == [
        "lock aaaa -> bbbb",
        "numpy absent -> 2.4.6",
        "onnxruntime 1.31.0 -> 1.32.0",
    ]
    assert changed_libraries(before, dict(before)) == []
    assert changed_libraries(None, after) == []  # a version written before the record: nothing to compare


def test_a_refresh_after_a_library_upgrade_warns_naming_it(tmp_path, bert_model_dir, monkeypatch, caplog):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        v1 = embed_job(config(inp, out, bert_model_dir))
    assert v1["run"]["libraries"] == library_versions()
    assert not [r for r in caplog.records if "changed since version" in r.getMessage()]

    upgraded = dict(library_versions(), onnxruntime="99.0.0")
    monkeypatch.setattr(e5ray.job.run, "library_versions", lambda: upgraded)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="e5ray"):
        v2 = embed_job(config(inp, out, bert_model_dir))
    warnings = [r.getMessage() for r in caplog.records if "changed since version" in r.getMessage()]
    assert len(warnings) == 1
    assert f"onnxruntime {version('onnxruntime')} -> 99.0.0" in warnings[0]
    assert "tokenizers" not in warnings[0]
    assert v2["run"]["libraries"]["onnxruntime"] == "99.0.0"


def test_every_output_file_records_the_libraries_where_the_model_ran(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    embed_job(config(inp, out, bert_model_dir))
    (shard,) = (out / "shards").rglob("*.parquet")
    metadata = pq.read_schema(shard).metadata
    assert json.loads(metadata[b"e5ray.libraries"]) == library_versions()
