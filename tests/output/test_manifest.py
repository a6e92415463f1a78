"""Typed manifest records: round trips, totals, format-1 manifests read and converted."""

from __future__ import annotations

import json

import pytest
from corpus_utils import embed_job, read_output, write_corpus
from job_utils import config, counts
from records import SPACE, entry, manifest

from e5ray.errors import SpaceMismatchError
from e5ray.output.gc import collect_garbage
from e5ray.output.manifest import FORMAT, Manifest, ShardEntry, check_space
from e5ray.output.verify import verify_output
from e5ray.output.versions import MANIFEST, load_latest, version_name
from e5ray.store.filesystem import OutputDir


def test_a_manifest_survives_its_json_round_trip():
    original = manifest(entry("a"), entry("b", rejected=2))
    data = json.loads(json.dumps(original.to_dict()))
    assert Manifest.from_dict(data) == original
    assert data["format"] == FORMAT and data["output"] == {"format": "parquet"}
    assert data["shards"][0]["files"] == [{"path": "shards/a.parquet", "bytes": 1000, "sha256": "ef" * 32, "rows": 10}]


def test_totals_are_derived_from_the_shards():
    totals = manifest(entry("a", rows=10), entry("b", rows=5, rejected=2)).totals
    assert totals == {
        "shards": 2,
        "input_rows": 17,
        "embedded": 15,
        "rejected": 2,
        "duplicates": 0,
        "truncated": 2,
        "tokens": 100,
        "bytes": 2000,
    }


def test_referenced_names_every_embedding_and_rejects_file():
    assert manifest(entry("a"), entry("b", rejected=1)).referenced() == {
        "shards/a.parquet",
        "shards/b.parquet",
        "shards/b.rejects.jsonl",
    }


def to_format_1(data: dict) -> dict:
    """A format-2 manifest dict as e5ray.manifest/1 wrote it: one `path` per shard, no output format."""
    old = {k: v for k, v in data.items() if k != "output"}
    old["format"] = "e5ray.manifest/1"
    old["shards"] = []
    for shard in data["shards"]:
        (file,) = shard["files"]
        converted = {k: v for k, v in shard.items() if k != "files"}
        converted.update(path=file["path"], bytes=file["bytes"], sha256=file["sha256"])
        old["shards"].append(converted)
    return old


def without_stamp(file: dict) -> dict:
    return {k: v for k, v in file.items() if k != "stamp"}


def test_a_format_1_entry_becomes_one_file():
    new = entry("a", rejected=3)
    old = to_format_1({"shards": [new.to_dict()]})["shards"][0]
    assert "files" not in old and old["path"] == "shards/a.parquet"
    assert ShardEntry.from_dict(old) == new


def test_an_unknown_manifest_format_is_refused():
    data = {**manifest(entry("a")).to_dict(), "format": "e5ray.manifest/9"}
    with pytest.raises(ValueError, match=r"e5ray\.manifest/9"):
        Manifest.from_dict(data)


def test_check_space_refuses_another_space_unless_full():
    previous = manifest(entry("a"))
    check_space(previous, SPACE, full=False)
    other = SPACE.with_prefix("query")
    with pytest.raises(SpaceMismatchError, match="prefix: 'passage' in the output, 'query' now"):
        check_space(previous, other, full=False)
    check_space(previous, other, full=True)
    check_space(None, other, full=False)


def test_an_output_written_in_format_1_keeps_refreshing_verifying_and_collecting(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    v1 = embed_job(config(inp, out, bert_model_dir))
    old = to_format_1(v1)
    for name in (MANIFEST, version_name(1)):
        (out / name).write_text(json.dumps(old, indent=1))
    output = OutputDir(str(out))

    loaded = load_latest(output)
    assert loaded is not None and loaded.output_format == "parquet"
    assert [s.files[0].path for s in loaded.shards] == [s["files"][0]["path"] for s in v1["shards"]]
    assert verify_output(output) == []
    assert collect_garbage(output, keep=1, min_age_s=0) == []

    v2 = embed_job(config(inp, out, bert_model_dir))
    assert v2["format"] == FORMAT and v2["changes"]["counts"] == counts(unchanged=3)
    # carried forward, now as file lists (format 1 recorded no stamps: a resume of them reads checksums)
    assert v2["shards"] == [{**s, "files": [without_stamp(f) for f in s["files"]]} for s in v1["shards"]]
    assert verify_output(output) == [] and len(read_output(str(out))) == 36
