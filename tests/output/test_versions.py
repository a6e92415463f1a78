"""Manifest versions: create-only commits, concurrent refreshes, runs killed at exact points.

A kill is simulated by an exception at the exact point that matters; real SIGKILLs are
in test_resume.py.
"""

from __future__ import annotations

import json

import pytest
from corpus_utils import embed_job, make_texts, read_output, write_corpus, write_shard
from job_utils import (
    Killed,
    assert_same_vectors,
    config,
    counts,
    dying,
    published,
    race,
    referenced,
    s3_config,
)

from e5ray.errors import ConcurrentCommitError, SpaceMismatchError
from e5ray.output.gc import collect_garbage
from e5ray.output.manifest import Manifest
from e5ray.output.verify import verify_output
from e5ray.output.versions import commit, list_versions
from e5ray.store import filesystem as storage
from e5ray.store.filesystem import OutputDir

# ---------------------------------------------------------------------------
# Concurrency guard
# ---------------------------------------------------------------------------


def test_concurrent_refreshes_only_one_commits_local(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=20)
    embed_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0005.parquet", list(range(50_000, 50_300)), make_texts(300, seed=5))
    # Different chunk sizes write different row groups, so the two outputs of the new shard
    # are different files and the loser's can be told apart.
    winner = race(config(inp, out, bert_model_dir, chunk_rows=32), config(inp, out, bert_model_dir))
    assert winner["version"] == 2
    assert published(out) == winner
    assert list_versions(OutputDir(str(out))) == [1, 2]
    on_disk = {f"shards/{p.name}" for p in (out / "shards").iterdir() if p.name.endswith(".parquet")}
    losers = on_disk - referenced(winner) - referenced(json.loads((out / "manifests/v000001.json").read_bytes()))
    assert len(losers) == 1 and losers.pop().startswith("shards/part-0005.parquet-")
    assert verify_output(OutputDir(str(out))) == []
    # gc removes the loser's files; the winner's stay valid, and the next refresh carries them
    deleted = collect_garbage(OutputDir(str(out)), keep=5, min_age_s=0)
    assert any(d.startswith("shards/part-0005.parquet-") and d.endswith(".parquet") for d in deleted)
    assert referenced(winner).isdisjoint(deleted)
    assert verify_output(OutputDir(str(out))) == []
    v3 = embed_job(config(inp, out, bert_model_dir))
    assert v3["changes"]["counts"] == counts(unchanged=3) and v3["version"] == 3


def test_commit_is_create_only_local(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    v1 = embed_job(config(inp, out, bert_model_dir))
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(OutputDir(str(out)), Manifest.from_dict({**v1, "run": {**v1["run"], "id": "another-run"}}))
    assert published(out) == v1
    assert sorted(p.name for p in (out / "manifests").iterdir()) == ["v000001.json"]  # no temp left


def test_commit_is_create_only_without_hard_links(tmp_path, bert_model_dir, monkeypatch):
    """Where os.link is refused (filesystems without hard links), a lock guards the commit."""
    import errno

    from e5ray.store import filesystem as storage

    def no_links(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", src)

    monkeypatch.setattr(storage.os, "link", no_links)
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=1, rows=5)
    v1 = embed_job(config(inp, out, bert_model_dir))
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(OutputDir(str(out)), Manifest.from_dict({**v1, "run": {**v1["run"], "id": "another-run"}}))
    assert published(out) == v1 == json.loads((out / "manifests/v000001.json").read_bytes())
    assert not [p for p in (out / "manifests").iterdir() if ".tmp-" in p.name]
    assert embed_job(config(inp, out, bert_model_dir))["version"] == 2


# ---------------------------------------------------------------------------
# Killed runs (simulated at exact points; real SIGKILLs are in test_resume.py)
# ---------------------------------------------------------------------------


def test_resume_reuses_checked_shards_only(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = embed_job(config(inp, out, bert_model_dir))
    for s in range(5):
        write_shard(inp / f"new-{s}.parquet", list(range(70_000 + 100 * s, 70_050 + 100 * s)), make_texts(50, 70 + s))
    with pytest.raises(Killed):
        embed_job(config(inp, out, bert_model_dir), executor=dying(3))
    assert published(out) == v1 and verify_output(OutputDir(str(out))) == []
    markers = sorted((out / "markers").glob("new-*.done.json"))
    assert len(markers) == 3
    done = [json.loads(m.read_bytes()) for m in markers]
    # a completed shard damaged since must not be reused: it is embedded again
    damaged = out / done[0]["files"][0]["path"]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))

    reads.clear()
    v2 = embed_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"] == counts(added=5, unchanged=2)
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (2, 3)
    assert sorted(reads) == sorted({f"new-{s}.parquet" for s in range(5)} - {d["source"]["relpath"] for d in done[1:]})
    assert verify_output(OutputDir(str(out))) == []
    embed_job(config(inp, tmp_path / "fresh", bert_model_dir))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))


def test_killed_full_switch_to_a_new_space_resumes(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=4, rows=15)
    v1 = embed_job(config(inp, out, bert_model_dir))
    with pytest.raises(Killed):
        embed_job(config(inp, out, bert_model_dir, max_length=64, full=True), executor=dying(2))
    assert published(out) == v1 and verify_output(OutputDir(str(out))) == []
    with pytest.raises(SpaceMismatchError):  # the output still holds the old space
        embed_job(config(inp, out, bert_model_dir, max_length=64))

    reads.clear()
    v2 = embed_job(config(inp, out, bert_model_dir, max_length=64, full=True))
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (2, 2)
    assert len(reads) == 2 and v2["space"]["max_length"] == 64
    assert verify_output(OutputDir(str(out))) == []
    embed_job(config(inp, tmp_path / "fresh", bert_model_dir, max_length=64))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))

    # --full in the same space still embeds every shard again: the markers of what the
    # previous version holds are not reused
    reads.clear()
    v3 = embed_job(config(inp, out, bert_model_dir, max_length=64, full=True))
    assert (v3["run"]["reused_shards"], v3["run"]["embedded_shards"]) == (0, 4) and len(reads) == 4


def test_run_killed_between_version_and_manifest_json(tmp_path, bert_model_dir, monkeypatch):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = embed_job(config(inp, out, bert_model_dir))
    write_shard(inp / "part-0007.parquet", [77, 78, 79], ["seven", "eight", "nine"])
    real_write_atomic = storage.write_atomic

    def dies_before_publishing(fs, path, data):
        if path.endswith("/manifest.json"):
            raise Killed
        real_write_atomic(fs, path, data)

    monkeypatch.setattr(storage, "write_atomic", dies_before_publishing)
    with pytest.raises(Killed):
        embed_job(config(inp, out, bert_model_dir))
    monkeypatch.undo()
    # readers still see v1, complete; v2 is committed but not yet published
    assert published(out) == v1 and verify_output(OutputDir(str(out))) == []
    assert list_versions(OutputDir(str(out))) == [1, 2]
    v2 = json.loads((out / "manifests/v000002.json").read_bytes())
    assert verify_output(OutputDir(str(out)), manifest_path="manifests/v000002.json") == []

    # the next run builds on v2 (not v1) and publishes
    v3 = embed_job(config(inp, out, bert_model_dir))
    assert (v3["version"], v3["previous"]) == (3, "manifests/v000002.json")
    assert v3["changes"]["counts"] == counts(unchanged=3) and v3["run"]["embedded_shards"] == 0
    assert v3["shards"] == v2["shards"]
    assert published(out) == v3
    # gc with keep=1 keeps what manifest.json names, and spares v2's files (v3 carries them)
    collect_garbage(OutputDir(str(out)), keep=1, min_age_s=0)
    assert verify_output(OutputDir(str(out))) == []


@pytest.fixture
def s3(s3_server, s3_bucket, s3_env):
    """(filesystem, bucket) for a fresh bucket; the job finds the server through the environment."""
    return s3_server.filesystem(), s3_bucket


def test_concurrency_guard_on_s3(s3, bert_model_dir):
    fs, bucket = s3
    output = f"s3://{bucket}/embeddings"
    write_corpus(f"{bucket}/corpus", shards=2, rows=10, fs=fs)
    v1 = embed_job(s3_config(bucket, bert_model_dir))
    # create-only PUT (If-None-Match: *): the same version cannot be written twice
    with pytest.raises(ConcurrentCommitError, match="v000001"):
        commit(OutputDir(output), Manifest.from_dict({**v1, "run": {**v1["run"], "id": "another-run"}}))
    assert published(output, fs) == v1

    write_shard(f"{bucket}/corpus/part-0005.parquet", list(range(50_000, 50_200)), make_texts(200, seed=6), fs)
    winner = race(s3_config(bucket, bert_model_dir, chunk_rows=32), s3_config(bucket, bert_model_dir))
    assert published(output, fs) == winner and winner["version"] == 2
    assert list_versions(OutputDir(output)) == [1, 2]
    on_disk = {p.split("/embeddings/", 1)[1] for p in fs.find(f"{bucket}/embeddings/shards") if p.endswith(".parquet")}
    losers = on_disk - referenced(winner) - referenced(v1)
    assert len(losers) == 1 and losers.pop().startswith("shards/part-0005.parquet-")
    assert verify_output(OutputDir(output)) == []
    collect_garbage(OutputDir(output), keep=5, min_age_s=0)
    assert verify_output(OutputDir(output)) == []
    v3 = embed_job(s3_config(bucket, bert_model_dir))
    assert v3["version"] == 3 and v3["changes"]["counts"] == counts(unchanged=3)
