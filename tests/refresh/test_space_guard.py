"""The space guard: an output never mixes vectors of two embedding spaces; --full switches."""

from __future__ import annotations

import json

import pytest
from corpus_utils import embed_job, read_output, write_corpus, write_shard
from job_utils import (
    assert_same_vectors,
    config,
    counts,
    published,
    s3_config,
)

from e5ray.cli.app import main as cli_main
from e5ray.errors import SpaceMismatchError
from e5ray.model.space import EmbeddingSpace
from e5ray.output.manifest import Manifest
from e5ray.output.verify import verify_output
from e5ray.output.versions import commit, list_versions
from e5ray.store.filesystem import OutputDir
from e5ray.testing import write_test_model

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
    v1 = embed_job(config(inp, out, bert_model_dir))
    model_paths = {"OTHER": str(other_bert_model), "XLMR": str(xlmr_model_dir)}
    change = {k: model_paths.get(v, v) for k, v in change.items()}
    new = dict(change)
    model_dir = new.pop("model_path", bert_model_dir)
    write_shard(inp / "part-0009.parquet", [90_000, 90_001], ["a new shard", "that must not be embedded"])
    listing = sorted(p.name for p in (out / "shards").iterdir())
    manifest_bytes = (out / "manifest.json").read_bytes()

    with pytest.raises(SpaceMismatchError) as err:
        embed_job(config(inp, out, model_dir, **new))
    message = str(err.value)
    for field in fields:
        assert f"{field}: " in message, message
    assert "--full" in message
    # refused before any work: no new version, no new file, manifest.json untouched
    assert list_versions(OutputDir(str(out))) == [1]
    assert sorted(p.name for p in (out / "shards").iterdir()) == listing
    assert (out / "manifest.json").read_bytes() == manifest_bytes

    # --full re-embeds everything into the new space, as a new version
    v2 = embed_job(config(inp, out, model_dir, full=True, **new))
    assert (v2["version"], v2["previous"]) == (2, "manifests/v000001.json")
    assert v2["changes"]["counts"] == counts(added=1, changed=3)
    assert v2["run"]["embedded_shards"] == 4
    old_space, new_space = v1["space"], v2["space"]
    for field in fields:
        assert old_space[field] != new_space[field]
    assert all(s["space_fingerprint"] == new_space["fingerprint"] for s in v2["shards"])
    assert verify_output(OutputDir(str(out))) == []
    embed_job(config(inp, tmp_path / "fresh", model_dir, **new))
    assert_same_vectors(read_output(str(out)), read_output(str(tmp_path / "fresh")))

    # the output now holds the new space: a plain refresh in it carries everything ...
    v3 = embed_job(config(inp, out, model_dir, **new))
    assert v3["changes"]["counts"] == counts(unchanged=4) and v3["run"]["embedded_shards"] == 0
    # ... and the old space is the one refused now
    with pytest.raises(SpaceMismatchError):
        embed_job(config(inp, out, bert_model_dir))


def test_space_guard_names_pooling_of_a_foreign_output(tmp_path, bert_model_dir):
    """An output whose manifest says CLS pooling (e.g. made by another tool) is never extended."""
    inp, out = tmp_path / "in", tmp_path / "out"
    write_corpus(inp, shards=2, rows=10)
    v1 = embed_job(config(inp, out, bert_model_dir))
    fields = {k: v for k, v in v1["space"].items() if k != "fingerprint"}
    cls_space = EmbeddingSpace(**{**fields, "pooling": "cls", "normalized": False})
    foreign = {**v1, "version": 2, "previous": "manifests/v000001.json", "space": cls_space.to_dict()}
    commit(OutputDir(str(out)), Manifest.from_dict(foreign))
    with pytest.raises(SpaceMismatchError, match=r"pooling: 'cls' in the output, 'mean' now") as err:
        embed_job(config(inp, out, bert_model_dir))
    assert "normalized: False in the output, True now" in str(err.value)
    v3 = embed_job(config(inp, out, bert_model_dir, full=True))
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
    assert cli_main(["refresh", *common, "--max-length", "32"]) == 3  # SpaceMismatchError.exit_code
    err = capsys.readouterr().err
    assert "SpaceMismatchError" in err and "max_length: 512 in the output, 32 now" in err
    assert cli_main(["refresh", *common, "--max-length", "32", "--full", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 2


@pytest.fixture
def s3(s3_server, s3_bucket, s3_env):
    """(filesystem, bucket) for a fresh bucket; the job finds the server through the environment."""
    return s3_server.filesystem(), s3_bucket


def test_space_guard_on_s3(s3, bert_model_dir):
    fs, bucket = s3
    write_corpus(f"{bucket}/corpus", shards=2, rows=10, fs=fs)
    v1 = embed_job(s3_config(bucket, bert_model_dir))
    with pytest.raises(SpaceMismatchError, match=r"max_length: 512 in the output, 100 now"):
        embed_job(s3_config(bucket, bert_model_dir, max_length=100))
    assert list_versions(OutputDir(f"s3://{bucket}/embeddings")) == [1]
    assert published(f"s3://{bucket}/embeddings", fs) == v1
    v2 = embed_job(s3_config(bucket, bert_model_dir, max_length=100, full=True))
    assert v2["space"]["max_length"] == 100 and v2["version"] == 2 and v2["run"]["embedded_shards"] == 2
    assert verify_output(OutputDir(f"s3://{bucket}/embeddings")) == []
