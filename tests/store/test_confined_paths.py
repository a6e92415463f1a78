"""Paths read from a manifest or a marker never leave the output; the manifest is schema-checked.

Edited manifests (a `..` path, an absolute path, a foreign scheme) are refused by verify,
gc and refresh with one line that names the entry, locally and on S3, and nothing outside
the output is read or deleted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from corpus_utils import write_corpus

from e5ray.cli.app import main as cli_main
from e5ray.config import JobConfig
from e5ray.job.run import run_job
from e5ray.output.gc import collect_garbage
from e5ray.output.manifest_schema import ManifestInvalidError, manifest_schema, validate_manifest
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir
from e5ray.store.paths import UnsafePathError, path_problem

BAD_PATHS = {
    "dotdot": "../outside/x.parquet",
    "deep-dotdot": "shards/../../../etc/passwd",
    "absolute": "/etc/passwd",
    "scheme": "s3://another-bucket/x.parquet",
    "file-scheme": "file:///etc/passwd",
    "drive": "C:/x.parquet",
    "backslash": "shards\\..\\x.parquet",
    "dot": "./shards/x.parquet",
    "empty-segment": "shards//x.parquet",
}


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    return JobConfig.from_options(
        input=str(inp), output=str(out), model="tiny", model_path=str(model_dir), executor="local", **kw
    )


@pytest.mark.parametrize("path", ["shards/a.parquet", "a.parquet", "shards/x-1.rejects.jsonl", "shards/.a..b"])
def test_confined_relative_paths_are_accepted(path):
    assert path_problem(path) is None


@pytest.mark.parametrize("name", sorted(BAD_PATHS))
def test_every_escaping_path_is_refused_by_the_rule_and_by_the_schema(name):
    assert path_problem(BAD_PATHS[name]) is not None
    # the shipped schema says the same on its own (for tools that validate without e5ray)
    from jsonschema import Draft202012Validator

    relpath = {"$schema": manifest_schema()["$schema"], **manifest_schema()["$defs"]["relpath"]}
    assert not Draft202012Validator(relpath).is_valid(BAD_PATHS[name])
    assert Draft202012Validator(relpath).is_valid("shards/ok-0123.parquet")


@pytest.fixture
def output(tmp_path, bert_model_dir):
    """A committed local output, and a file outside it that nothing may touch."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=5)
    run_job(config(inp, out, bert_model_dir))
    outside = tmp_path / "outside" / "x.parquet"
    outside.parent.mkdir()
    outside.write_bytes(b"not yours")
    return inp, out, outside


def edit_manifests(out: Path, path: str, field: str = "path") -> None:
    """Point the first shard of manifest.json and of the newest version at `path`."""
    for name in ["manifest.json", *sorted(p.relative_to(out).as_posix() for p in (out / "manifests").glob("*.json"))]:
        data = json.loads((out / name).read_bytes())
        if field == "path":
            data["shards"][0]["files"][0]["path"] = path
        else:
            data["shards"][0][field] = {"path": path, "bytes": 1, "sha256": "0" * 64, "rows": 1}
        (out / name).write_text(json.dumps(data))


@pytest.mark.parametrize("name", ["dotdot", "deep-dotdot", "absolute", "scheme", "file-scheme"])
def test_verify_gc_and_refresh_refuse_an_edited_manifest(output, bert_model_dir, capsys, name):
    inp, out, outside = output
    bad = BAD_PATHS[name]
    edit_manifests(out, bad)
    before = sorted(p for p in out.parent.rglob("*") if p.is_file())

    assert cli_main(["verify", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("e5ray: error: UnsafePathError: manifest.json: shards[0].files[0].path")
    assert repr(bad) in err[0]

    assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "UnsafePathError: manifests/v000001.json: shards[0].files[0].path" in err[0]

    with pytest.raises(UnsafePathError, match=r"manifests/v000001\.json: shards\[0\]\.files\[0\]\.path"):
        run_job(config(inp, out, bert_model_dir))
    # nothing was deleted, committed or written anywhere
    assert sorted(p for p in out.parent.rglob("*") if p.is_file()) == before
    assert outside.read_bytes() == b"not yours"


def test_a_rejects_path_outside_the_output_is_refused(output):
    _, out, _ = output
    edit_manifests(out, "../outside/x.parquet", field="rejects")
    with pytest.raises(UnsafePathError, match=r"shards\[0\]\.rejects\.path"):
        verify_output(OutputDir(str(out)))
    with pytest.raises(UnsafePathError):
        collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)


@pytest.mark.parametrize("where", ["marker_path", "legacy_marker_path"])  # markers/, and shards/ of older outputs
def test_a_marker_naming_a_path_outside_the_output_is_refused_on_resume(output, bert_model_dir, where):
    inp, out, outside = output
    (inp / "part-0000.parquet").write_bytes((inp / "part-0000.parquet").read_bytes())  # new mtime: changed
    run = json.loads((out / "manifest.json").read_bytes())
    # the marker the next run will look at for the changed shard (its key is in the task)
    from e5ray.corpus.sources import discover
    from e5ray.worker.task import ShardTask

    source = next(s for s in discover(str(inp)) if s.relpath == "part-0000.parquet")
    task = ShardTask(source, run["space"]["fingerprint"])
    entry = dict(run["shards"][0])
    entry["files"] = [dict(entry["files"][0], path="../outside/x.parquet")]
    marker = out / getattr(task, where)
    marker.parent.mkdir(exist_ok=True)
    marker.write_text(json.dumps(entry))
    with pytest.raises(UnsafePathError, match=r"\.done\.json: entry\.files\[0\]\.path: path '\.\./outside/x\.parquet'"):
        run_job(config(inp, out, bert_model_dir))
    assert outside.read_bytes() == b"not yours"


@pytest.mark.parametrize(
    "edit, where",
    [
        (lambda m: m.pop("shards"), "(top level)"),
        (lambda m: m["shards"][0].update(rows=-1), "shards[0].rows"),
        (lambda m: m["shards"][0].update(sha256="not-a-hash"), "shards[0].sha256"),
        (lambda m: m.update(version="7"), "version"),
    ],
)
def test_a_manifest_that_breaks_the_schema_is_refused_with_one_line(output, capsys, edit, where):
    _, out, _ = output
    data = json.loads((out / "manifest.json").read_bytes())
    edit(data)
    (out / "manifest.json").write_text(json.dumps(data))
    assert cli_main(["verify", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"e5ray: error: ManifestInvalidError: manifest.json: {where}")


def test_a_manifest_that_is_not_json_is_refused_with_one_line(output, capsys):
    _, out, _ = output
    (out / "manifest.json").write_bytes(b"{truncated")
    assert cli_main(["verify", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ManifestInvalidError: manifest.json: not JSON" in err[0]


def test_a_format_1_manifest_passes_the_schema_and_its_paths_are_checked(output):
    _, out, _ = output
    data = json.loads((out / "manifest.json").read_bytes())
    for entry in data["shards"]:
        (ref,) = entry.pop("files")
        entry.update(path=ref["path"], bytes=ref["bytes"], sha256=ref["sha256"])
    data["format"] = "e5ray.manifest/1"
    assert validate_manifest(data, "manifest.json") is data
    data["shards"][0]["path"] = "../x"
    with pytest.raises(UnsafePathError, match=r"shards\[0\]\.path"):
        validate_manifest(data, "manifest.json")
    with pytest.raises(ManifestInvalidError, match="not a manifest object"):
        validate_manifest([], "manifest.json")


def test_verify_on_s3_refuses_a_dotdot_path_with_one_line(s3_server, s3_bucket, s3_env, bert_model_dir, capsys):
    fs = s3_server.filesystem()
    write_corpus(f"{s3_bucket}/corpus", shards=1, rows=4, fs=fs)
    out = f"s3://{s3_bucket}/emb"
    run_job(config(f"s3://{s3_bucket}/corpus", out, bert_model_dir))
    data = json.loads(fs.cat_file(f"{s3_bucket}/emb/manifest.json"))
    data["shards"][0]["files"][0]["path"] = "../corpus/part-0000.parquet"
    fs.pipe_file(f"{s3_bucket}/emb/manifest.json", json.dumps(data).encode())
    assert cli_main(["verify", out]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1
        and "UnsafePathError: manifest.json: shards[0].files[0].path: path '../corpus/part-0000.parquet'" in err[0]
    )


RUN_KINDS = {
    "plain": {},
    "kept columns": {"keep_columns": ("lang",)},
    "jsonl sink": {"output_format": "jsonl", "keep_columns": ("lang",)},
    "chunk mode": {"long_text": "chunk", "max_length": 16},
    "average mode": {"long_text": "average", "max_length": 16},
    "small units": {"unit_rows": 2},
    "string ids": {"id_type": "string"},
}


@pytest.mark.parametrize("kind", sorted(RUN_KINDS))
def test_every_kind_of_run_and_refresh_writes_manifests_the_schema_and_verify_accept(tmp_path, bert_model_dir, kind):
    """Whatever a run records (kept columns, file metadata, reuse blocks, units, windows,
    duplicates, ids files) passes the shipped schema and both verify modes, and so does a
    refresh that reuses rows and rejects a duplicate id."""
    from corpus_utils import embed_job, make_texts, write_shard

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    rows = [{"id": i, "text": t, "lang": "de"} for i, t in enumerate(make_texts(5, seed=1), start=1)]
    (inp / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*rows, {"id": 9, "text": ""}]))
    write_shard(inp / "b.jsonl", [10, 11], ["ten", "eleven"])
    options = RUN_KINDS[kind]
    embed_job(config(inp, out, bert_model_dir, **options))
    write_shard(inp / "b.jsonl", [10, 11, 1], ["ten", "eleven changed", "a.jsonl has id 1"])
    second = embed_job(config(inp, out, bert_model_dir, **options))
    assert second["totals"]["duplicates"] == 1 and second["run"]["embedded_shards"] >= 1
    names = ["manifest.json", *sorted(p.relative_to(out).as_posix() for p in (out / "manifests").glob("*.json"))]
    for name in names:
        validate_manifest(json.loads((out / name).read_bytes()), name)
    assert verify_output(OutputDir(str(out))) == [] and verify_output(OutputDir(str(out)), quick=True) == []
    assert cli_main(["verify", str(out)]) == 0
