"""Scheduled corpus refresh: incremental runs, versions, guards, resume, gc, rejects.

Runs in process (`executor="local"`, no Ray) on tiny test models, on local directories
and on the real S3 test server. Killed drivers (real SIGKILLs) are in test_resume.py;
here a kill is simulated by an exception at the exact point that matters.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from corpus_utils import make_texts, read_output, write_corpus, write_shard

from e5ray import manifest as manifest_module
from e5ray import shards as shards_module
from e5ray.cli import main as cli_main
from e5ray.gc import collect_garbage
from e5ray.job import JobConfig, run_job, run_local
from e5ray.manifest import ConcurrentCommitError, SpaceMismatchError, commit, list_versions
from e5ray.space import EmbeddingSpace
from e5ray.testmodels import write_test_model
from e5ray.verify import verify_output

COUNT_KEYS = ("added", "changed", "removed", "unchanged")


class Killed(BaseException):
    """Stands in for a SIGKILL: not an Exception, so nothing on the way catches it."""


def config(inp: Any, out: Any, model_dir: Any, **kw: Any) -> JobConfig:
    kw.setdefault("model", "tiny")
    return JobConfig(input=str(inp), output=str(out), model_path=str(model_dir), executor="local", **kw)


def counts(added: int = 0, changed: int = 0, removed: int = 0, unchanged: int = 0) -> dict[str, int]:
    return {"added": added, "changed": changed, "removed": removed, "unchanged": unchanged}


def names(uris: list[str]) -> list[str]:
    return sorted(u.rsplit("/", 1)[-1] for u in uris)


def by_relpath(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["source"]["relpath"]: s for s in manifest["shards"]}


def shard_files(entry: dict[str, Any]) -> list[str]:
    return [entry["path"]] + [entry[f]["path"] for f in ("rejects", "ids") if entry.get(f)]


def stat_files(out: Path, rels: list[str]) -> dict[str, tuple[int, bytes]]:
    """mtime (ns) and content of local output files: 'untouched' means both equal."""
    return {rel: ((out / rel).stat().st_mtime_ns, (out / rel).read_bytes()) for rel in rels}


def assert_same_vectors(got: dict[Any, np.ndarray], want: dict[Any, np.ndarray]) -> None:
    assert sorted(got, key=str) == sorted(want, key=str)  # same ids (read_output asserts no duplicates)
    ids = sorted(want, key=str)
    np.testing.assert_allclose(np.stack([got[i] for i in ids]), np.stack([want[i] for i in ids]), atol=1e-6)


def published(out: Any, fs: Any = None) -> dict[str, Any]:
    """manifest.json as readers see it."""
    if fs is None:
        return json.loads(Path(out, "manifest.json").read_bytes())
    return json.loads(fs.cat_file(f"{str(out).removeprefix('s3://')}/manifest.json"))


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """relpaths of the source shards a run reads (carried shards must not be read)."""
    seen: list[str] = []
    original = shards_module.read_chunks

    def recording(shard, *args, **kwargs):
        seen.append(shard.relpath)
        return original(shard, *args, **kwargs)

    monkeypatch.setattr(shards_module, "read_chunks", recording)
    return seen


def edit_corpus(inp: Path) -> None:
    """Change part-0001 (more rows, new texts), delete part-0002, add sub/part-0100."""
    write_shard(inp / "part-0001.jsonl", list(range(10_000, 10_045)), make_texts(45, seed=901))
    (inp / "part-0002.jsonl.gz").unlink()
    # ids of one type across shards (a corpus mixing types is refused: e5ray.rows)
    write_shard(inp / "sub" / "part-0100.parquet", list(range(90_000, 90_025)), make_texts(25, seed=902))


# ---------------------------------------------------------------------------
# Incremental refresh on a local directory
# ---------------------------------------------------------------------------


def test_refresh_embeds_only_new_and_changed_shards(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=4, rows=30)  # part-0000.parquet .. part-0003.parquet, mixed formats
    v1 = run_job(config(inp, out, bert_model_dir))
    assert (v1["version"], v1["previous"]) == (1, None)
    assert v1["changes"]["counts"] == counts(added=4)
    assert sorted(reads) == sorted(by_relpath(v1))
    before = by_relpath(v1)
    unchanged = ["part-0000.parquet", "part-0003.parquet"]
    untouched = stat_files(out, [f for rel in unchanged for f in shard_files(before[rel])])

    edit_corpus(inp)
    reads.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    changes = v2["changes"]
    assert changes["counts"] == counts(added=1, changed=1, removed=1, unchanged=2)
    assert names(changes["added"]) == ["part-0100.parquet"]
    assert names(changes["changed"]) == ["part-0001.jsonl"]
    assert names(changes["removed"]) == ["part-0002.jsonl.gz"]
    assert names(changes["unchanged"]) == unchanged
    assert {k: len(changes[k]) for k in COUNT_KEYS} == changes["counts"]
    run = v2["run"]
    assert (run["embedded_shards"], run["carried_shards"], run["reused_shards"]) == (2, 2, 0)
    assert sorted(reads) == ["part-0001.jsonl", "sub/part-0100.parquet"]  # the unchanged ones were not read

    after = by_relpath(v2)
    assert sorted(after) == ["part-0000.parquet", "part-0001.jsonl", "part-0003.parquet", "sub/part-0100.parquet"]
    for rel in unchanged:  # carried forward: the very same entry and the very same files
        assert after[rel] == before[rel]
    assert stat_files(out, list(untouched)) == untouched
    assert after["part-0001.jsonl"]["path"] != before["part-0001.jsonl"]["path"]
    assert after["part-0001.jsonl"]["rows"] == 45

    # versions: immutable files linked by `previous`; manifest.json is the newest
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert list_versions(str(out)) == [1, 2]
    assert published(out) == v2 == json.loads((out / "manifests/v000002.json").read_bytes())
    assert json.loads((out / "manifests/v000001.json").read_bytes()) == v1
    assert verify_output(str(out)) == []
    # v1 keeps its files (the removed and the changed shard's) until gc
    assert verify_output(str(out), manifest_path="manifests/v000001.json") == []
    assert v2["totals"]["input_rows"] == v2["totals"]["embedded"] == 30 + 45 + 30 + 25

    # the result equals a full run over the new corpus into a fresh output
    fresh = run_job(config(inp, tmp_path / "fresh", bert_model_dir, full=True))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))
    assert {k: v2["totals"][k] for k in ("input_rows", "embedded", "rejected")} == {
        k: fresh["totals"][k] for k in ("input_rows", "embedded", "rejected")
    }

    # nothing changed: a new version that carries everything, reads nothing
    reads.clear()
    v3 = run_job(config(inp, out, bert_model_dir))
    assert (v3["version"], v3["previous"]) == (3, "manifests/v000002.json")
    assert v3["changes"]["counts"] == counts(unchanged=4)
    assert (v3["run"]["embedded_shards"], v3["run"]["carried_shards"]) == (0, 4)
    assert reads == [] and v3["shards"] == v2["shards"]

    # --full on the same space re-embeds every shard, to the same vectors
    v4 = run_job(config(inp, out, bert_model_dir, full=True))
    assert (v4["version"], v4["previous"]) == (4, "manifests/v000003.json")
    assert v4["run"]["embedded_shards"] == 4 and v4["run"]["full"] is True
    assert v4["changes"]["counts"] == counts(unchanged=4)  # the corpus did not change; the work did
    assert sorted(reads) == sorted(by_relpath(v4))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))
    assert verify_output(str(out)) == []
    assert list_versions(str(out)) == [1, 2, 3, 4]


def test_changed_mtime_alone_counts_as_changed(tmp_path, bert_model_dir):
    """The local fingerprint is size + mtime: a rewritten file with equal size is re-embedded."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    run_job(config(inp, out, bert_model_dir))
    target = inp / "part-0000.parquet"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    v2 = run_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"] == counts(changed=1, unchanged=1)
    assert v2["run"]["embedded_shards"] == 1


# ---------------------------------------------------------------------------
# Space guard
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_bert_model(tmp_path_factory):
    """Same architecture and name as bert_model_dir, other weights: another model file."""
    return write_test_model(tmp_path_factory.mktemp("other-bert"), arch="bert", seed=7)


@pytest.mark.parametrize(
    "change, fields",
    [
        ({"max_length": 64}, ["max_length"]),
        ({"prefix": "query"}, ["prefix"]),
        ({"model_path": "OTHER"}, ["model_sha256"]),
        ({"model": "tiny-xlmr", "model_path": "XLMR"}, ["model", "model_sha256"]),
    ],
)
def test_space_guard_refuses_to_mix_then_full_switches(
    tmp_path, bert_model_dir, xlmr_model_dir, other_bert_model, change, fields
):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=15)
    v1 = run_job(config(inp, out, bert_model_dir))
    model_paths = {"OTHER": str(other_bert_model), "XLMR": str(xlmr_model_dir)}
    change = {k: model_paths.get(v, v) for k, v in change.items()}
    new = dict(change)
    model_dir = new.pop("model_path", bert_model_dir)
    write_shard(inp / "part-0009.parquet", [90_000, 90_001], ["a new shard", "that must not be embedded"])
    listing = sorted(p.name for p in (out / "shards").iterdir())
    manifest_bytes = (out / "manifest.json").read_bytes()

    with pytest.raises(SpaceMismatchError) as err:
        run_job(config(inp, out, model_dir, **new))
    message = str(err.value)
    for field in fields:
        assert f"{field}: " in message, message
    assert "--full" in message
    # refused before any work: no new version, no new file, manifest.json untouched
    assert list_versions(str(out)) == [1]
    assert sorted(p.name for p in (out / "shards").iterdir()) == listing
    assert (out / "manifest.json").read_bytes() == manifest_bytes

    # --full re-embeds everything into the new space, as a new version
    v2 = run_job(config(inp, out, model_dir, full=True, **new))
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert v2["changes"]["counts"] == counts(added=1, changed=3)
    assert v2["run"]["embedded_shards"] == 4
    old_space, new_space = v1["space"], v2["space"]
    for field in fields:
        assert old_space[field] != new_space[field]
    assert all(s["space_fingerprint"] == new_space["fingerprint"] for s in v2["shards"])
    assert verify_output(str(out)) == []
    run_job(config(inp, tmp_path / "fresh", model_dir, **new))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))

    # the output now holds the new space: a plain refresh in it carries everything ...
    v3 = run_job(config(inp, out, model_dir, **new))
    assert v3["changes"]["counts"] == counts(unchanged=4) and v3["run"]["embedded_shards"] == 0
    # ... and the old space is the one refused now
    with pytest.raises(SpaceMismatchError):
        run_job(config(inp, out, bert_model_dir))


def test_space_guard_names_pooling_of_a_foreign_output(tmp_path, bert_model_dir):
    """An output whose manifest says CLS pooling (e.g. made by another tool) is never extended."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = run_job(config(inp, out, bert_model_dir))
    fields = {k: v for k, v in v1["space"].items() if k != "fingerprint"}
    cls_space = EmbeddingSpace(**{**fields, "pooling": "cls", "normalized": False})
    commit(str(out), {**v1, "version": 2, "previous": "manifests/v000001.json", "space": cls_space.to_dict()})
    with pytest.raises(SpaceMismatchError, match=r"pooling: 'cls' in the output, 'mean' now") as err:
        run_job(config(inp, out, bert_model_dir))
    assert "normalized: False in the output, True now" in str(err.value)
    v3 = run_job(config(inp, out, bert_model_dir, full=True))
    assert v3["space"]["pooling"] == "mean" and v3["run"]["embedded_shards"] == 2


def test_cli_reports_space_mismatch_clearly(tmp_path, bert_model_dir, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    common = [
        "--input",
        str(inp),
        "--output",
        str(out),
        "--model",
        "tiny",
        "--model-path",
        str(bert_model_dir),
        "--executor",
        "local",
        "--quiet",
    ]
    assert cli_main(["embed", *common]) == 0
    capsys.readouterr()
    assert cli_main(["refresh", *common, "--max-length", "32"]) == 2
    err = capsys.readouterr().err
    assert "SpaceMismatchError" in err and "max_length: 512 in the output, 32 now" in err
    assert cli_main(["refresh", *common, "--max-length", "32", "--full"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 2


# ---------------------------------------------------------------------------
# Concurrency guard
# ---------------------------------------------------------------------------


def race(loser: JobConfig, winner: JobConfig) -> dict[str, Any]:
    """Two refreshes that both read the same newest version: the winner commits while the
    loser embeds (deterministic: the loser's executor runs the whole winner first)."""
    won: dict[str, Any] = {}

    def executor(tasks, cfg, space_fingerprint) -> Iterator[dict[str, Any]]:
        won["manifest"] = run_job(winner)
        yield from run_local(tasks, cfg, space_fingerprint)

    with pytest.raises(ConcurrentCommitError, match=r"v000002\.json was committed by another run"):
        run_job(loser, executor=executor)
    return won["manifest"]


def referenced(manifest: dict[str, Any]) -> set[str]:
    return {f for entry in manifest["shards"] for f in shard_files(entry)}


def test_concurrent_refreshes_only_one_commits_local(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=20)
    run_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0005.parquet", list(range(50_000, 50_300)), make_texts(300, seed=5))
    # Different chunk sizes write different row groups, so the two outputs of the new shard
    # are different files and the loser's can be told apart.
    winner = race(config(inp, out, bert_model_dir, chunk_rows=32), config(inp, out, bert_model_dir))
    assert winner["version"] == 2
    assert published(out) == winner
    assert list_versions(str(out)) == [1, 2]
    on_disk = {f"shards/{p.name}" for p in (out / "shards").iterdir() if p.name.endswith(".parquet")}
    losers = on_disk - referenced(winner) - referenced(json.loads((out / "manifests/v000001.json").read_bytes()))
    assert len(losers) == 1 and losers.pop().startswith("shards/part-0005.parquet-")
    assert verify_output(str(out)) == []
    # gc removes the loser's files; the winner's stay valid, and the next refresh carries them
    deleted = collect_garbage(str(out), keep=5, min_age_s=0)
    assert any(d.startswith("shards/part-0005.parquet-") and d.endswith(".parquet") for d in deleted)
    assert referenced(winner).isdisjoint(deleted)
    assert verify_output(str(out)) == []
    v3 = run_job(config(inp, out, bert_model_dir))
    assert v3["changes"]["counts"] == counts(unchanged=3) and v3["version"] == 3


def test_commit_is_create_only_local(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    v1 = run_job(config(inp, out, bert_model_dir))
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(str(out), {**v1, "run": {**v1["run"], "id": "another-run"}})
    assert published(out) == v1
    assert sorted(p.name for p in (out / "manifests").iterdir()) == ["v000001.json"]  # no temp left


def test_commit_is_create_only_without_hard_links(tmp_path, bert_model_dir, monkeypatch):
    """Where os.link is refused (filesystems without hard links), a lock guards the commit."""
    import errno

    from e5ray import storage

    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(storage.os, "link", no_links)
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    v1 = run_job(config(inp, out, bert_model_dir))
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(str(out), {**v1, "run": {**v1["run"], "id": "another-run"}})
    assert published(out) == v1 == json.loads((out / "manifests/v000001.json").read_bytes())
    assert not [p for p in (out / "manifests").iterdir() if ".tmp-" in p.name]
    assert run_job(config(inp, out, bert_model_dir))["version"] == 2


# ---------------------------------------------------------------------------
# Killed runs (simulated at exact points; real SIGKILLs are in test_resume.py)
# ---------------------------------------------------------------------------


def dying(after: int):
    """An executor that embeds `after` shards completely, then dies."""

    def executor(tasks, cfg, space_fingerprint) -> Iterator[dict[str, Any]]:
        for done, entry in enumerate(run_local(tasks, cfg, space_fingerprint), start=1):
            yield entry
            if done == after:
                raise Killed

    return executor


def test_resume_reuses_checked_shards_only(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = run_job(config(inp, out, bert_model_dir))
    for s in range(5):
        write_shard(inp / f"new-{s}.parquet", list(range(70_000 + 100 * s, 70_050 + 100 * s)), make_texts(50, 70 + s))
    with pytest.raises(Killed):
        run_job(config(inp, out, bert_model_dir), executor=dying(3))
    assert published(out) == v1 and verify_output(str(out)) == []
    markers = sorted((out / "shards").glob("new-*.done.json"))
    assert len(markers) == 3
    done = [json.loads(m.read_bytes()) for m in markers]
    # a completed shard damaged since must not be reused: it is embedded again
    damaged = out / done[0]["path"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    reads.clear()
    v2 = run_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"] == counts(added=5, unchanged=2)
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (2, 3)
    assert sorted(reads) == sorted({f"new-{s}.parquet" for s in range(5)} - {d["source"]["relpath"] for d in done[1:]})
    assert verify_output(str(out)) == []
    run_job(config(inp, tmp_path / "fresh", bert_model_dir))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))


def test_killed_full_switch_to_a_new_space_resumes(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=4, rows=15)
    v1 = run_job(config(inp, out, bert_model_dir))
    with pytest.raises(Killed):
        run_job(config(inp, out, bert_model_dir, max_length=64, full=True), executor=dying(2))
    assert published(out) == v1 and verify_output(str(out)) == []
    with pytest.raises(SpaceMismatchError):  # the output still holds the old space
        run_job(config(inp, out, bert_model_dir, max_length=64))

    reads.clear()
    v2 = run_job(config(inp, out, bert_model_dir, max_length=64, full=True))
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (2, 2)
    assert len(reads) == 2 and v2["space"]["max_length"] == 64
    assert verify_output(str(out)) == []
    run_job(config(inp, tmp_path / "fresh", bert_model_dir, max_length=64))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))

    # --full in the same space still embeds every shard again: the markers of what the
    # previous version holds are not reused
    reads.clear()
    v3 = run_job(config(inp, out, bert_model_dir, max_length=64, full=True))
    assert (v3["run"]["reused_shards"], v3["run"]["embedded_shards"]) == (0, 4) and len(reads) == 4


def test_run_killed_between_version_and_manifest_json(tmp_path, bert_model_dir, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = run_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0007.parquet", [77, 78, 79], ["seven", "eight", "nine"])
    real_write_atomic = manifest_module.write_atomic

    def dies_before_publishing(fs, path, data):
        if path.endswith("/manifest.json"):
            raise Killed
        real_write_atomic(fs, path, data)

    monkeypatch.setattr(manifest_module, "write_atomic", dies_before_publishing)
    with pytest.raises(Killed):
        run_job(config(inp, out, bert_model_dir))
    monkeypatch.undo()
    # readers still see v1, complete; v2 is committed but not yet published
    assert published(out) == v1 and verify_output(str(out)) == []
    assert list_versions(str(out)) == [1, 2]
    v2 = json.loads((out / "manifests/v000002.json").read_bytes())
    assert verify_output(str(out), manifest_path="manifests/v000002.json") == []

    # the next run builds on v2 (not v1) and publishes
    v3 = run_job(config(inp, out, bert_model_dir))
    assert (v3["version"], v3["previous"]) == (3, "manifests/v000002.json")
    assert v3["changes"]["counts"] == counts(unchanged=3) and v3["run"]["embedded_shards"] == 0
    assert v3["shards"] == v2["shards"]
    assert published(out) == v3
    # gc with keep=1 keeps what manifest.json names, and spares v2's files (v3 carries them)
    collect_garbage(str(out), keep=1, min_age_s=0)
    assert verify_output(str(out)) == []


# ---------------------------------------------------------------------------
# gc
# ---------------------------------------------------------------------------


def test_gc_keeps_what_kept_versions_reference(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=3, rows=12)
    write_shard(inp / "bad.jsonl", [901, 902, None], ["fine", None, "no id"])  # has a rejects file
    v1 = run_job(config(inp, out, bert_model_dir))
    edit_corpus(inp)  # changes part-0001, removes part-0002, adds sub/part-0100
    v2 = run_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0000.parquet", [0, 1, 2], ["zero", "one", "two"])  # changed again
    v3 = run_job(config(inp, out, bert_model_dir))
    # leftovers of killed runs: a shard being written, a marker, a version and manifest.json half-replaced
    temps = [
        "shards/.part-0000.parquet-0123456789abcdef.x1y2.parquet.tmp",
        "shards/part-0000.parquet-0123456789abcdef.done.json.tmp-1a2b3c4d",
        "manifests/v000004.json.tmp-5e6f7a8b",
        "manifest.json.tmp-9c0d1e2f",
    ]
    for rel in temps:
        (out / rel).write_bytes(b"partial")
    files = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}

    # young files are spared: a running job may be about to commit them
    assert collect_garbage(str(out), keep=1) == []
    # dry run lists, deletes nothing
    would = collect_garbage(str(out), keep=2, min_age_s=0, dry_run=True)
    assert {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()} == files

    deleted = collect_garbage(str(out), keep=2, min_age_s=0)
    assert deleted == would
    only_v1 = referenced(v1) - referenced(v2) - referenced(v3)
    assert only_v1 and set(temps) | only_v1 | {"manifests/v000001.json"} <= set(deleted)
    assert (referenced(v2) | referenced(v3)).isdisjoint(deleted)
    assert verify_output(str(out)) == []
    assert verify_output(str(out), manifest_path="manifests/v000002.json") == []  # keep=2: v2 intact
    assert not any(str(p.relative_to(out)) in temps for p in out.rglob("*"))
    kept_markers = {json.loads(p.read_bytes())["path"] for p in (out / "shards").glob("*.done.json")}
    assert kept_markers == {e["path"] for e in v2["shards"] + v3["shards"]}  # markers of kept shards stay

    deleted = collect_garbage(str(out), keep=1, min_age_s=0)
    only_v2 = referenced(v2) - referenced(v3)
    assert only_v2 and only_v2 | {"manifests/v000002.json"} <= set(deleted)
    assert referenced(v3).isdisjoint(deleted)
    assert verify_output(str(out)) == []
    assert list_versions(str(out)) == [3]
    remaining = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}
    markers = {r for r in remaining if r.endswith(".done.json")}
    assert remaining - markers == referenced(v3) | {"manifest.json", "manifests/v000003.json"}
    assert len(markers) == len(v3["shards"])
    assert collect_garbage(str(out), keep=1, min_age_s=0) == []

    # the next refresh carries v3's files and numbers on
    v4 = run_job(config(inp, out, bert_model_dir))
    assert v4["version"] == 4 and v4["run"]["embedded_shards"] == 0 and verify_output(str(out)) == []
    with pytest.raises(ValueError, match="keep must be >= 1"):
        collect_garbage(str(out), keep=0)


def test_gc_cli(tmp_path, bert_model_dir, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=5)
    run_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0000.parquet", [7], ["seven"])
    v2 = run_job(config(inp, out, bert_model_dir))
    assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0", "--dry-run"]) == 0
    assert "would delete manifests/v000001.json" in capsys.readouterr().out
    assert cli_main(["gc", str(out), "--keep", "1", "--min-age", "0"]) == 0
    assert "deleted manifests/v000001.json" in capsys.readouterr().out
    assert cli_main(["verify", str(out)]) == 0
    assert published(out) == v2


# ---------------------------------------------------------------------------
# Rejected rows
# ---------------------------------------------------------------------------


def test_rejected_rows_are_counted_and_recorded(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    lines = [
        {"id": 1, "text": "kept one"},
        {"id": 2, "text": None},
        {"id": 3, "text": "   "},
        {"id": None, "text": "no id"},
        "{this is not json",
        {"id": 1, "text": "same id again"},
        {"id": "seven", "text": "a string id in an integer shard"},
        {"id": 4.5, "text": "a float id"},
        {"id": 5, "text": "kept two"},
    ]
    (inp / "mixed.jsonl").write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    # integer ids like the other shards: a version mixing id types is refused (test_rows.py)
    write_shard(inp / "table.parquet", [20, None, 22, 22, 23], ["kept", "null id", "kept", "duplicate", None])
    write_shard(inp / "all-bad.jsonl", [1, 2], ["", None])
    write_shard(inp / "good.parquet", [10, 11], ["ten", "eleven"])
    manifest = run_job(config(inp, out, bert_model_dir, chunk_rows=3))  # duplicates across chunks too
    shards = by_relpath(manifest)

    def reasons(rel: str) -> list[tuple[int, Any, str]]:
        lines = (out / shards[rel]["rejects"]["path"]).read_text().splitlines()
        return [(r["row"], r["id"], r["reason"]) for r in map(json.loads, lines)]

    mixed = reasons("mixed.jsonl")
    assert [(row, reason.split(":")[0]) for row, _, reason in mixed] == [
        (1, "null text"),
        (2, "empty text"),
        (3, "null id"),
        (4, "malformed JSON line"),
        (5, "duplicate id in this shard"),
        (6, "id 'seven' is a str, but this shard's ids are int"),
        (7, "id 4.5 is a float; ids must be integers or strings"),
    ]
    assert (shards["mixed.jsonl"]["input_rows"], shards["mixed.jsonl"]["rows"], shards["mixed.jsonl"]["rejected"]) == (
        9,
        2,
        7,
    )
    assert reasons("table.parquet") == [
        (1, None, "null id"),
        (3, 22, "duplicate id in this shard"),
        (4, 23, "null text"),
    ]
    assert (shards["all-bad.jsonl"]["rows"], shards["all-bad.jsonl"]["rejected"]) == (0, 2)
    assert shards["good.parquet"]["rejects"] is None and shards["good.parquet"]["rejected"] == 0
    for entry in manifest["shards"]:
        assert entry["input_rows"] == entry["rows"] + entry["rejected"]
        if entry["rejected"]:
            assert entry["rejects"]["rows"] == entry["rejected"]
    totals = manifest["totals"]
    # mixed.jsonl, table.parquet, all-bad.jsonl, good.parquet
    assert (totals["input_rows"], totals["embedded"], totals["rejected"]) == (
        9 + 5 + 2 + 2,
        2 + 2 + 0 + 2,
        7 + 3 + 2 + 0,
    )
    assert sorted(read_output(str(out))) == [1, 5, 10, 11, 20, 22]
    assert verify_output(str(out)) == []

    # a refresh carries the rejects files with their shards; gc keeps them
    write_shard(inp / "good.parquet", [10, 11, 12], ["ten", "eleven", "twelve"])
    v2 = run_job(config(inp, out, bert_model_dir))
    assert by_relpath(v2)["mixed.jsonl"] == shards["mixed.jsonl"]
    collect_garbage(str(out), keep=1, min_age_s=0)
    assert verify_output(str(out)) == [] and reasons("mixed.jsonl") == mixed


# ---------------------------------------------------------------------------
# On the real S3 test server
# ---------------------------------------------------------------------------


@pytest.fixture
def s3(s3_server, s3_bucket, s3_env):
    """(filesystem, bucket) for a fresh bucket; the job finds the server through the environment."""
    return s3_server.filesystem(), s3_bucket


def s3_config(bucket: str, model_dir: Any, **kw: Any) -> JobConfig:
    return config(f"s3://{bucket}/corpus", f"s3://{bucket}/embeddings", model_dir, **kw)


def test_refresh_on_s3(s3, bert_model_dir, reads, tmp_path):
    fs, bucket = s3
    corpus = f"{bucket}/corpus"
    write_corpus(corpus, shards=4, rows=20, fs=fs)
    v1 = run_job(s3_config(bucket, bert_model_dir))
    assert all(s["source"]["stamp"].startswith("etag:") for s in v1["shards"])
    before = by_relpath(v1)
    unchanged = ["part-0000.parquet", "part-0003.parquet"]
    infos = {rel: fs.info(f"{bucket}/embeddings/{before[rel]['path']}") for rel in unchanged}

    write_shard(f"{corpus}/part-0001.jsonl", list(range(10_000, 10_033)), make_texts(33, seed=903), fs)
    fs.rm_file(f"{corpus}/part-0002.jsonl.gz")
    write_shard(f"{corpus}/part-0100.parquet", list(range(90_000, 90_017)), make_texts(17, seed=904), fs)
    reads.clear()
    # same process, so it must see the changes just made; the input spelled with a trailing
    # slash this time names the same shards
    v2 = run_job(config(f"s3://{bucket}/corpus/", f"s3://{bucket}/embeddings", bert_model_dir))
    assert v2["changes"]["counts"] == counts(added=1, changed=1, removed=1, unchanged=2)
    assert names(v2["changes"]["removed"]) == ["part-0002.jsonl.gz"]
    assert v2["run"]["embedded_shards"] == 2 and sorted(reads) == ["part-0001.jsonl", "part-0100.parquet"]
    after = by_relpath(v2)
    for rel in unchanged:
        assert after[rel] == before[rel]
        info = fs.info(f"{bucket}/embeddings/{after[rel]['path']}")
        assert (info["ETag"], info["LastModified"]) == (infos[rel]["ETag"], infos[rel]["LastModified"])
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert published(f"s3://{bucket}/embeddings", fs) == v2
    assert verify_output(f"s3://{bucket}/embeddings") == []

    # equal to a full run into a fresh (local) output
    run_job(config(f"s3://{bucket}/corpus", tmp_path / "fresh", bert_model_dir, full=True))
    assert_same_vectors(read_output(f"s3://{bucket}/embeddings", fs), read_output(str(tmp_path / "fresh")))

    # gc on S3: keep=1 drops v1-only files, never v2's
    fs.pipe_file(f"{bucket}/embeddings/manifests/v000003.json.tmp-00000000", b"partial")
    deleted = collect_garbage(f"s3://{bucket}/embeddings", keep=1, min_age_s=0)
    assert {"manifests/v000001.json", "manifests/v000003.json.tmp-00000000"} <= set(deleted)
    assert (referenced(v1) - referenced(v2)) <= set(deleted) and referenced(v2).isdisjoint(deleted)
    assert verify_output(f"s3://{bucket}/embeddings") == []


def test_space_guard_on_s3(s3, bert_model_dir):
    fs, bucket = s3
    write_corpus(f"{bucket}/corpus", shards=2, rows=10, fs=fs)
    v1 = run_job(s3_config(bucket, bert_model_dir))
    with pytest.raises(SpaceMismatchError, match=r"max_length: 512 in the output, 100 now"):
        run_job(s3_config(bucket, bert_model_dir, max_length=100))
    assert list_versions(f"s3://{bucket}/embeddings") == [1]
    assert published(f"s3://{bucket}/embeddings", fs) == v1
    v2 = run_job(s3_config(bucket, bert_model_dir, max_length=100, full=True))
    assert v2["space"]["max_length"] == 100 and v2["version"] == 2 and v2["run"]["embedded_shards"] == 2
    assert verify_output(f"s3://{bucket}/embeddings") == []


def test_concurrency_guard_on_s3(s3, bert_model_dir):
    fs, bucket = s3
    output = f"s3://{bucket}/embeddings"
    write_corpus(f"{bucket}/corpus", shards=2, rows=10, fs=fs)
    v1 = run_job(s3_config(bucket, bert_model_dir))
    # create-only PUT (If-None-Match: *): the same version cannot be written twice
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(output, {**v1, "run": {**v1["run"], "id": "another-run"}})
    assert published(output, fs) == v1

    write_shard(f"{bucket}/corpus/part-0005.parquet", list(range(50_000, 50_200)), make_texts(200, seed=6), fs)
    winner = race(s3_config(bucket, bert_model_dir, chunk_rows=32), s3_config(bucket, bert_model_dir))
    assert published(output, fs) == winner and winner["version"] == 2
    assert list_versions(output) == [1, 2]
    on_disk = {p.split("/embeddings/", 1)[1] for p in fs.find(f"{bucket}/embeddings/shards") if p.endswith(".parquet")}
    losers = on_disk - referenced(winner) - referenced(v1)
    assert len(losers) == 1 and losers.pop().startswith("shards/part-0005.parquet-")
    assert verify_output(output) == []
    collect_garbage(output, keep=5, min_age_s=0)
    assert verify_output(output) == []
    v3 = run_job(s3_config(bucket, bert_model_dir))
    assert v3["version"] == 3 and v3["changes"]["counts"] == counts(unchanged=3)


# ---------------------------------------------------------------------------
# The schedule examples
# ---------------------------------------------------------------------------

SCHEDULES = Path(__file__).resolve().parents[1] / "examples" / "schedules"


def test_schedule_examples_use_only_real_flags():
    """Every flag the examples pass exists: job flags after refresh_corpus.py, gc flags
    after `e5ray.cli gc`, `ray job submit` options before its `--`."""
    import argparse
    import re
    import subprocess

    import yaml

    from e5ray.cli import add_job_arguments, build_parser

    job_parser = argparse.ArgumentParser()
    add_job_arguments(job_parser)
    job_flags = {o for a in job_parser._actions for o in a.option_strings}
    gc_parser = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)).choices["gc"]
    gc_flags = {o for a in gc_parser._actions for o in a.option_strings}
    ray_cli = pytest.importorskip("ray.dashboard.modules.job.cli")
    submit_flags = {o for p in ray_cli.submit.params for o in p.opts}

    seen = set()
    for name in ("cron.sh", "k8s-cronjob.yaml", "rayjob.yaml"):
        text = (SCHEDULES / name).read_text()
        code = " ".join(line for line in text.replace("\\\n", " ").splitlines() if not line.lstrip().startswith("#"))
        for part in re.split(r"(?=ray job submit|refresh_corpus\.py|e5ray\.cli gc|&&)", code):
            if part.startswith("ray job submit"):
                part, allowed = part.split(" -- ")[0], submit_flags
            elif part.startswith("refresh_corpus.py"):
                allowed = job_flags
            elif part.startswith("e5ray.cli gc"):
                allowed = gc_flags
            else:
                continue
            flags = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", part))
            assert flags <= allowed, f"{name}: unknown flags {sorted(flags - allowed)} in {part[:80]!r}"
            seen.add((name, part.split()[0]))
        assert "refresh_corpus.py" in code
    assert {("cron.sh", "ray"), ("cron.sh", "refresh_corpus.py"), ("k8s-cronjob.yaml", "ray")} <= seen

    cron = (SCHEDULES / "cron.sh").read_text()
    assert "flock" in cron and "--working-dir ." in cron
    assert subprocess.run(["bash", "-n", str(SCHEDULES / "cron.sh")], capture_output=True).returncode == 0
    cronjob = yaml.safe_load((SCHEDULES / "k8s-cronjob.yaml").read_text())
    assert cronjob["kind"] == "CronJob" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    rayjob = yaml.safe_load((SCHEDULES / "rayjob.yaml").read_text())
    assert rayjob["kind"] == "RayJob" and "refresh_corpus.py" in rayjob["spec"]["entrypoint"]
    assert (SCHEDULES / "README.md").exists()
