"""Incremental refresh: only new and changed shards are embedded, on local directories and S3.

Runs in process (`executor="local"`, no Ray) on tiny test models. Killed drivers (real
SIGKILLs) are in test_resume.py.
"""

from __future__ import annotations

import json
import os

import pytest
from corpus_utils import embed_job, make_texts, read_output, write_corpus, write_shard
from job_utils import (
    assert_same_vectors,
    by_relpath,
    config,
    counts,
    edit_corpus,
    names,
    published,
    referenced,
    s3_config,
    shard_files,
    stat_files,
)

from e5ray.output.gc import collect_garbage
from e5ray.output.verify import verify_output
from e5ray.output.versions import list_versions
from e5ray.store.filesystem import OutputDir

# ---------------------------------------------------------------------------
# Incremental refresh on a local directory
# ---------------------------------------------------------------------------

COUNT_KEYS = ("added", "changed", "removed", "unchanged")


def test_refresh_embeds_only_new_and_changed_shards(tmp_path, bert_model_dir, reads):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=4, rows=30)  # part-0000.parquet .. part-0003.parquet, mixed formats
    v1 = embed_job(config(inp, out, bert_model_dir))
    assert (v1["version"], v1["previous"]) == (1, None)
    assert v1["changes"]["counts"] == counts(added=4)
    assert sorted(reads) == sorted(by_relpath(v1))
    before = by_relpath(v1)
    unchanged = ["part-0000.parquet", "part-0003.parquet"]
    untouched = stat_files(out, [f for rel in unchanged for f in shard_files(before[rel])])

    edit_corpus(inp)
    reads.clear()
    v2 = embed_job(config(inp, out, bert_model_dir))
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
    assert after["part-0001.jsonl"]["files"] != before["part-0001.jsonl"]["files"]
    assert after["part-0001.jsonl"]["rows"] == 45

    # versions: immutable files linked by `previous`; manifest.json is the newest
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert list_versions(OutputDir(str(out))) == [1, 2]
    assert published(out) == v2 == json.loads((out / "manifests/v000002.json").read_bytes())
    assert json.loads((out / "manifests/v000001.json").read_bytes()) == v1
    assert verify_output(OutputDir(str(out))) == []
    # v1 keeps its files (the removed and the changed shard's) until gc
    assert verify_output(OutputDir(str(out)), manifest_path="manifests/v000001.json") == []
    assert v2["totals"]["input_rows"] == v2["totals"]["embedded"] == 30 + 45 + 30 + 25

    # the result equals a full run over the new corpus into a fresh output
    fresh = embed_job(config(inp, tmp_path / "fresh", bert_model_dir, full=True))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))
    assert {k: v2["totals"][k] for k in ("input_rows", "embedded", "rejected")} == {
        k: fresh["totals"][k] for k in ("input_rows", "embedded", "rejected")
    }

    # nothing changed: a new version that carries everything, reads nothing
    reads.clear()
    v3 = embed_job(config(inp, out, bert_model_dir))
    assert (v3["version"], v3["previous"]) == (3, "manifests/v000002.json")
    assert v3["changes"]["counts"] == counts(unchanged=4)
    assert (v3["run"]["embedded_shards"], v3["run"]["carried_shards"]) == (0, 4)
    assert reads == [] and v3["shards"] == v2["shards"]

    # --full on the same space re-embeds every shard, to the same vectors
    v4 = embed_job(config(inp, out, bert_model_dir, full=True))
    assert (v4["version"], v4["previous"]) == (4, "manifests/v000003.json")
    assert v4["run"]["embedded_shards"] == 4 and v4["run"]["full"] is True
    assert v4["changes"]["counts"] == counts(unchanged=4)  # the corpus did not change; the work did
    assert sorted(reads) == sorted(by_relpath(v4))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))
    assert verify_output(OutputDir(str(out))) == []
    assert list_versions(OutputDir(str(out))) == [1, 2, 3, 4]


def test_changed_mtime_alone_counts_as_changed(tmp_path, bert_model_dir):
    """The local fingerprint is size + mtime: a rewritten file with equal size is re-embedded."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    embed_job(config(inp, out, bert_model_dir))
    target = inp / "part-0000.parquet"
    st = target.stat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    v2 = embed_job(config(inp, out, bert_model_dir))
    assert v2["changes"]["counts"] == counts(changed=1, unchanged=1)
    assert v2["run"]["embedded_shards"] == 1


@pytest.fixture
def s3(s3_server, s3_bucket, s3_env):
    """(filesystem, bucket) for a fresh bucket; the job finds the server through the environment."""
    return s3_server.filesystem(), s3_bucket


def test_refresh_on_s3(s3, bert_model_dir, reads, tmp_path):
    fs, bucket = s3
    corpus = f"{bucket}/corpus"
    write_corpus(corpus, shards=4, rows=20, fs=fs)
    v1 = embed_job(s3_config(bucket, bert_model_dir))
    assert all(s["source"]["stamp"].startswith("etag:") for s in v1["shards"])
    before = by_relpath(v1)
    unchanged = ["part-0000.parquet", "part-0003.parquet"]
    infos = {rel: fs.info(f"{bucket}/embeddings/{before[rel]['files'][0]['path']}") for rel in unchanged}

    write_shard(f"{corpus}/part-0001.jsonl", list(range(10_000, 10_033)), make_texts(33, seed=903), fs)
    fs.rm_file(f"{corpus}/part-0002.jsonl.gz")
    write_shard(f"{corpus}/part-0100.parquet", list(range(90_000, 90_017)), make_texts(17, seed=904), fs)
    reads.clear()
    # same process, so it must see the changes just made; the input spelled with a trailing
    # slash this time names the same shards
    v2 = embed_job(config(f"s3://{bucket}/corpus/", f"s3://{bucket}/embeddings", bert_model_dir))
    assert v2["changes"]["counts"] == counts(added=1, changed=1, removed=1, unchanged=2)
    assert names(v2["changes"]["removed"]) == ["part-0002.jsonl.gz"]
    assert v2["run"]["embedded_shards"] == 2 and sorted(reads) == ["part-0001.jsonl", "part-0100.parquet"]
    after = by_relpath(v2)
    for rel in unchanged:
        assert after[rel] == before[rel]
        info = fs.info(f"{bucket}/embeddings/{after[rel]['files'][0]['path']}")
        assert (info["ETag"], info["LastModified"]) == (infos[rel]["ETag"], infos[rel]["LastModified"])
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert published(f"s3://{bucket}/embeddings", fs) == v2
    assert verify_output(OutputDir(f"s3://{bucket}/embeddings")) == []

    # equal to a full run into a fresh (local) output
    embed_job(config(f"s3://{bucket}/corpus", tmp_path / "fresh", bert_model_dir, full=True))
    assert_same_vectors(read_output(f"s3://{bucket}/embeddings", fs), read_output(str(tmp_path / "fresh")))

    # gc on S3: keep=1 drops v1-only files, never v2's
    fs.pipe_file(f"{bucket}/embeddings/manifests/v000003.json.tmp-00000000", b"partial")
    deleted = collect_garbage(OutputDir(f"s3://{bucket}/embeddings"), keep=1, min_age_s=0)
    assert {"manifests/v000001.json", "manifests/v000003.json.tmp-00000000"} <= set(deleted)
    assert (referenced(v1) - referenced(v2)) <= set(deleted) and referenced(v2).isdisjoint(deleted)
    assert verify_output(OutputDir(f"s3://{bucket}/embeddings")) == []
