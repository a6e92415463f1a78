"""`e5ray gc`: what kept versions reference stays, the rest goes."""

from __future__ import annotations

import json

import pytest
from corpus_utils import embed_job, write_corpus, write_shard
from job_utils import (
    config,
    edit_corpus,
    published,
    referenced,
)

from e5ray.cli.app import main as cli_main
from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.output.versions import list_versions
from e5ray.store.filesystem import OutputDir

# ---------------------------------------------------------------------------
# gc
# ---------------------------------------------------------------------------


def test_gc_keeps_what_kept_versions_reference(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    write_shard(inp / "bad.jsonl", [901, 902, None], ["fine", None, "no id"])  # has a rejects file
    v1 = embed_job(config(inp, out, bert_model_dir))
    edit_corpus(inp)  # changes part-0001, removes part-0002, adds sub/part-0100
    v2 = embed_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0000.parquet", [0, 1, 2], ["zero", "one", "two"])  # changed again
    v3 = embed_job(config(inp, out, bert_model_dir))
    # leftovers of killed runs: a shard being written, a marker, a version and manifest.json half-replaced
    temps = [
        "shards/.part-0000.parquet-0123456789abcdef.x1y2.parquet.tmp",
        "markers/part-0000.parquet-0123456789abcdef.done.json.tmp-1a2b3c4d",
        "manifests/v000004.json.tmp-5e6f7a8b",
        "manifest.json.tmp-9c0d1e2f",
    ]
    for rel in temps:
        (out / rel).write_bytes(b"partial")
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}

    # young files are spared: a running job may be about to commit them
    assert collect_garbage(OutputDir(str(out)), keep=1) == []
    # dry run lists, deletes nothing
    would = collect_garbage(OutputDir(str(out)), keep=2, min_age_s=0, dry_run=True)
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == files

    deleted = collect_garbage(OutputDir(str(out)), keep=2, min_age_s=0)
    assert deleted == would
    only_v1 = referenced(v1) - referenced(v2) - referenced(v3)
    assert only_v1 and set(temps) | only_v1 | {"manifests/v000001.json"} <= set(deleted)
    assert (referenced(v2) | referenced(v3)).isdisjoint(deleted)
    assert verify_output(OutputDir(str(out))) == []
    assert verify_output(OutputDir(str(out)), manifest_path="manifests/v000002.json") == []  # keep=2: v2 intact
    assert not any(str(p.relative_to(out)) in temps for p in out.rglob("*"))
    kept_markers = {json.loads(p.read_bytes())["files"][0]["path"] for p in (out / "markers").glob("*.done.json")}
    assert kept_markers == {e["files"][0]["path"] for e in v2["shards"] + v3["shards"]}  # markers of kept shards stay

    deleted = collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    only_v2 = referenced(v2) - referenced(v3)
    assert only_v2 and only_v2 | {"manifests/v000002.json", v2["row_changes"]["path"]} <= set(deleted)
    assert referenced(v3).isdisjoint(deleted)
    assert verify_output(OutputDir(str(out))) == []
    assert list_versions(OutputDir(str(out))) == [3]
    remaining = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    markers = {r for r in remaining if r.endswith(".done.json")}
    # the change file goes and stays with its version (e5ray.output.change_file)
    assert remaining - markers == referenced(v3) | {
        "manifest.json",
        "manifests/v000003.json",
        v3["row_changes"]["path"],
    }
    assert len(markers) == len(v3["shards"])
    assert collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0) == []

    # the next refresh carries v3's files and numbers on
    v4 = embed_job(config(inp, out, bert_model_dir))
    assert v4["version"] == 4 and v4["run"]["embedded_shards"] == 0 and verify_output(OutputDir(str(out))) == []
    with pytest.raises(ValueError, match="keep must be >= 1"):
        collect_garbage(OutputDir(str(out)), keep=0)


def test_gc_cli(tmp_path, bert_model_dir, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=5)
    embed_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0000.parquet", [7], ["seven"])
    v2 = embed_job(config(inp, out, bert_model_dir))
    assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0", "--dry-run"]) == 0
    assert "would delete manifests/v000001.json" in capsys.readouterr().out
    assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0"]) == 0
    assert "deleted manifests/v000001.json" in capsys.readouterr().out
    assert cli_main(["verify", str(out)]) == 0
    assert published(out) == v2
