"""Manifests of many units: entries in a Parquet side file that manifest.json names and checksums.

The threshold is lowered so that a corpus of a few shards crosses it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from corpus_utils import embed_job, write_corpus, write_shard
from job_utils import config, counts, edit_corpus, s3_config

from e5ray.corpus.sources import SourceShard
from e5ray.corpus.units import UnitRange
from e5ray.errors import ManifestInvalidError, UnsafePathError
from e5ray.job.run import run_job
from e5ray.output import versions
from e5ray.output.gc import collect_garbage
from e5ray.output.manifest import FileRef, ShardEntry
from e5ray.output.manifest_schema import validate_manifest
from e5ray.output.manifest_table import ENTRY_SCHEMA, entries_to_table
from e5ray.output.verify import verify_output
from e5ray.output.versions import MANIFEST, SideFileError, load_latest, read_manifest, version_name
from e5ray.store.filesystem import OutputDir


@pytest.fixture
def low_threshold(monkeypatch):
    monkeypatch.setattr(versions, "SIDE_FILE_MIN_ENTRIES", 2)


def _manifest_json(out: Path) -> dict:
    return json.loads((out / MANIFEST).read_bytes())


def _side_path(out: Path) -> Path:
    return out / _manifest_json(out)["shards_file"]["path"]


def test_a_manifest_over_the_threshold_round_trips_through_commit_and_load_unchanged(
    tmp_path, bert_model_dir, low_threshold
):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    write_shard(inp / "bad.jsonl", [901, 902, None], ["fine", None, "no id"])  # a rejects file too
    committed = run_job(config(inp, out, bert_model_dir))
    data = _manifest_json(out)
    assert "shards" not in data
    ref = data["shards_file"]
    side = out / ref["path"]
    assert ref["path"].startswith("manifests/v000001.shards.") and ref["path"].endswith(".parquet")
    assert ref["entries"] == 4 and ref["bytes"] == side.stat().st_size
    assert ref["sha256"] == hashlib.sha256(side.read_bytes()).hexdigest() and ref["sha256"][:16] in ref["path"]
    assert (out / version_name(1)).read_bytes() == (out / MANIFEST).read_bytes()
    for loaded in (load_latest(OutputDir(str(out))), read_manifest(OutputDir(str(out)), MANIFEST)):
        assert loaded == committed and loaded.to_dict() == committed.to_dict()
        assert loaded.entries_file == ref["path"]
    assert pq.ParquetFile(side).metadata.row_group(0).column(0).compression == "ZSTD"
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []


def test_a_refresh_on_top_of_a_side_file_manifest_carries_its_entries(tmp_path, bert_model_dir, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    v1 = embed_job(config(inp, out, bert_model_dir))  # under the threshold: plain JSON
    assert "shards" in _manifest_json(out)
    monkeypatch.setattr(versions, "SIDE_FILE_MIN_ENTRIES", 2)
    v2 = embed_job(config(inp, out, bert_model_dir))  # the plain version read, the new one to a side file
    assert v2["shards"] == v1["shards"] and v2["changes"]["counts"] == counts(unchanged=3)
    edit_corpus(inp)  # part-0001 changed, part-0002 removed, sub/part-0100 added
    v3 = embed_job(config(inp, out, bert_model_dir))  # reads version 2 from its side file
    assert v3["changes"]["counts"] == counts(added=1, changed=1, removed=1, unchanged=1)
    carried = {s["source"]["relpath"]: s for s in v3["shards"]}["part-0000.parquet"]
    assert carried == {s["source"]["relpath"]: s for s in v2["shards"]}["part-0000.parquet"]
    assert load_latest(OutputDir(str(out))).to_dict() == v3
    assert _manifest_json(out)["shards_file"]["path"].startswith("manifests/v000003.shards.")
    assert verify_output(OutputDir(str(out))) == []


@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda p: p.unlink(), "missing"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1]), "bytes"),
        (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "sha256"),
    ],
    ids=["missing", "truncated", "one-byte-changed"],
)
def test_a_missing_or_altered_side_file_is_a_one_line_error_naming_it(
    tmp_path, bert_model_dir, low_threshold, damage, expected
):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    run_job(config(inp, out, bert_model_dir))
    side = _side_path(out)
    damage(side)
    rel = f"manifests/{side.name}"
    with pytest.raises(SideFileError) as info:
        read_manifest(OutputDir(str(out)), MANIFEST)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{rel}: {expected}")
    if expected == "missing":
        assert message == f"{rel}: missing (the entries file manifest.json names)"
    else:
        ref = _manifest_json(out)["shards_file"]
        said = ref["bytes"] if expected == "bytes" else ref["sha256"]
        found = side.stat().st_size if expected == "bytes" else hashlib.sha256(side.read_bytes()).hexdigest()
        assert message == f"{rel}: {expected} {found}, manifest.json says {said}"
    for quick in (False, True):  # verify reports it as its one problem, in both modes
        assert verify_output(OutputDir(str(out)), MANIFEST, quick=quick) == [message]
    # a refresh refuses to build on it
    with pytest.raises(SideFileError, match=rel):
        run_job(config(inp, out, bert_model_dir))


def test_a_side_file_with_another_entry_count_than_its_manifest_says_is_refused(
    tmp_path, bert_model_dir, low_threshold
):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    run_job(config(inp, out, bert_model_dir))
    data = _manifest_json(out)
    data["shards_file"]["entries"] = 4
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(SideFileError, match=r"^manifests/v000001\.shards\.[0-9a-f]{16}\.parquet: 3 entries, manifest"):
        read_manifest(OutputDir(str(out)), MANIFEST)


def test_gc_keeps_the_side_files_of_kept_versions_and_removes_those_of_removed_ones(
    tmp_path, bert_model_dir, low_threshold
):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    run_job(config(inp, out, bert_model_dir))
    first = _manifest_json(out)["shards_file"]["path"]
    edit_corpus(inp)
    run_job(config(inp, out, bert_model_dir))
    second = _manifest_json(out)["shards_file"]["path"]
    assert first != second
    stray = out / "manifests" / "v000003.shards.0123456789abcdef.parquet"  # a commit that lost a race
    stray.write_bytes(b"PAR1")
    output = OutputDir(str(out))
    assert first not in collect_garbage(output, keep=2, min_age_s=0, dry_run=True)
    deleted = collect_garbage(output, keep=1, min_age_s=0)
    assert (
        first in deleted
        and version_name(1) in deleted
        and "manifests/v000003.shards.0123456789abcdef.parquet" in deleted
    )
    assert second not in deleted and (out / second).exists() and not (out / first).exists()
    assert verify_output(output) == []


def test_below_the_threshold_manifest_json_is_unchanged(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    committed = run_job(config(inp, out, bert_model_dir))
    assert len(committed.shards) < versions.SIDE_FILE_MIN_ENTRIES
    assert (out / MANIFEST).read_bytes() == json.dumps(committed.to_dict(), indent=1, ensure_ascii=False).encode()
    assert sorted(p.name for p in (out / "manifests").iterdir()) == ["v000001.json"]
    assert load_latest(OutputDir(str(out))).entries_file is None


def _entry(**changes) -> dict:
    ref = FileRef("shards/a.parquet", 10, "a" * 64, 3)
    source = SourceShard("/in/a.jsonl", "a.jsonl", 5, "mtime:1", "jsonl")
    entry = ShardEntry((ref,), 3, 3, 0, 0, 9, 9, 0.1, 0.1, source, "k", "f" * 64, unit=UnitRange("bytes", 0, 5))
    data = entry.to_dict()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        target = data
        for part in parents:
            target = target[part][0] if part == "files" else target[part]
        target[last] = value
    return data


BAD_ENTRIES = {
    "negative rows": ({"rows": -1}, ManifestInvalidError, "shards[1].rows -1 is negative"),
    "a path outside the output": ({"files.path": "../../etc/passwd"}, UnsafePathError, "shards[1].files[].path"),
    "no sha256": ({"files.sha256": "xyz"}, ManifestInvalidError, "shards[1].files[].sha256 'xyz' is no sha256"),
    "an unknown unit kind": ({"unit.kind": "pages"}, ManifestInvalidError, "shards[1].unit.kind 'pages' is not one"),
    "an unknown id type": ({"id_type": "float"}, ManifestInvalidError, "shards[1].id_type 'float' is not one"),
    "no files": ({"files": []}, ManifestInvalidError, "shards[1].files [] is empty"),
    "no key": ({"key": None}, ManifestInvalidError, "shards[1].key None is missing"),
}


@pytest.mark.parametrize("case", list(BAD_ENTRIES), ids=list(BAD_ENTRIES))
def test_a_side_file_whose_values_the_schema_refuses_is_refused_naming_the_entry(
    tmp_path, bert_model_dir, low_threshold, case
):
    changes, error, where = BAD_ENTRIES[case]
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=5)
    committed = run_job(config(inp, out, bert_model_dir))
    entries = [_entry(), _entry(**changes)]
    # The JSON route refuses it too: the table's check and the schema say the same.
    with pytest.raises((ManifestInvalidError, UnsafePathError)):
        validate_manifest({**committed.to_dict(), "shards": entries}, "m.json")
    # A writer that bypassed commit: a side file with a correct checksum, holding the bad entry.
    sink = pa.BufferOutputStream()
    pq.write_table(entries_to_table(entries), sink)
    blob = sink.getvalue().to_pybytes()
    sha = hashlib.sha256(blob).hexdigest()
    rel = versions.side_file_name(2, sha)
    (out / rel).write_bytes(blob)
    data = _manifest_json(out)
    data["shards_file"] = {"path": rel, "bytes": len(blob), "sha256": sha, "entries": 2}
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(error) as info:
        read_manifest(OutputDir(str(out)), MANIFEST)
    assert str(info.value).startswith(f"{rel}: ") and where in str(info.value) and "\n" not in str(info.value)


def test_the_entries_table_has_a_column_for_every_field_of_an_entry():
    assert ENTRY_SCHEMA.names == [f.name for f in dataclasses.fields(ShardEntry)]
    file_fields = {f.name for f in ENTRY_SCHEMA.field("files").type.value_type}
    assert file_fields == {f.name for f in dataclasses.fields(FileRef)}
    assert {f.name for f in ENTRY_SCHEMA.field("source").type} == set(_entry()["source"])
    assert {f.name for f in ENTRY_SCHEMA.field("unit").type} == {f.name for f in dataclasses.fields(UnitRange)}
    with pytest.raises(ValueError, match=r"\['shiny'\], which the entries table has no column for"):
        entries_to_table([{**_entry(), "shiny": 1}])


def test_a_manifest_naming_a_side_file_outside_the_output_is_refused(tmp_path, bert_model_dir, low_threshold):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    run_job(config(inp, out, bert_model_dir))
    data = _manifest_json(out)
    data["shards_file"]["path"] = "../elsewhere.parquet"
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(
        UnsafePathError,
        match=r"^manifest.json: shards_file.path: path '\.\./elsewhere\.parquet' holds a '\.\.' segment",
    ):
        read_manifest(OutputDir(str(out)), MANIFEST)
    data["shards"] = []  # both shapes at once: ambiguous, refused
    data["shards_file"]["path"] = "manifests/x.parquet"
    (out / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ManifestInvalidError, match=r"^manifest.json: \(top level\)"):
        read_manifest(OutputDir(str(out)), MANIFEST)


def test_a_side_file_manifest_on_s3_loads_verifies_carries_and_is_collected(
    s3_server, s3_bucket, s3_env, bert_model_dir, low_threshold
):
    fs, bucket = s3_server.filesystem(), s3_bucket
    output = OutputDir(f"s3://{bucket}/embeddings")
    write_corpus(f"{bucket}/corpus", shards=3, rows=8, fs=fs)
    v1 = run_job(s3_config(bucket, bert_model_dir))
    first = json.loads(fs.cat_file(f"{bucket}/embeddings/{MANIFEST}"))["shards_file"]["path"]
    assert load_latest(output) == v1 and verify_output(output) == [] and verify_output(output, quick=True) == []
    write_shard(f"{bucket}/corpus/part-0009.parquet", [90_000, 90_001], ["new", "texts"], fs)
    v2 = run_job(s3_config(bucket, bert_model_dir))
    assert v2.changes["counts"] == counts(added=1, unchanged=3) and load_latest(output) == v2
    assert first in collect_garbage(output, keep=1, min_age_s=0)
    assert not fs.exists(f"{bucket}/embeddings/{first}") and verify_output(output) == []
    fs.rm_file(f"{bucket}/embeddings/{load_latest(output).entries_file}")
    problems = verify_output(output)
    assert len(problems) == 1 and problems[0].endswith(": missing (the entries file manifest.json names)")
