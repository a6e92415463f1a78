"""`e5ray stage-model`: a flat copy with SHA256SUMS that --model-path reads, locally and on S3."""

from __future__ import annotations

import hashlib

from e5ray import describe_space
from e5ray.model.stage import CHECKSUMS, check_staged, stage_model


def test_a_staged_copy_is_checksummed_and_gives_the_same_space(bert_model_dir, tmp_path):
    staged = stage_model("tiny", str(tmp_path / "staged"), model_path=str(bert_model_dir))
    names = {line.split("  ")[1] for line in (tmp_path / "staged" / CHECKSUMS).read_text().splitlines()}
    assert {"model.onnx", "tokenizer.json", "config.json", "tokenizer_config.json"} <= names
    for name, sha in staged.files.items():
        assert hashlib.sha256((tmp_path / "staged" / name).read_bytes()).hexdigest() == sha
    assert check_staged(str(tmp_path / "staged")) == []
    original = describe_space("tiny", str(bert_model_dir), cache_dir=str(tmp_path / "cache"))
    copy = describe_space("tiny", str(tmp_path / "staged"), cache_dir=str(tmp_path / "cache"))
    assert copy.fingerprint == original.fingerprint

    (tmp_path / "staged" / "tokenizer.json").write_text("{}")
    (tmp_path / "staged" / "config.json").unlink()
    problems = check_staged(str(tmp_path / "staged"))
    assert any(p.startswith("tokenizer.json: sha256") for p in problems) and "config.json: missing" in problems


def test_staging_to_s3_is_read_back_by_model_path(bert_model_dir, s3_server, s3_bucket, s3_env, tmp_path):
    destination = f"s3://{s3_bucket}/models/tiny"
    stage_model("tiny", destination, model_path=str(bert_model_dir))
    assert check_staged(destination) == []
    original = describe_space("tiny", str(bert_model_dir), cache_dir=str(tmp_path / "cache"))
    remote = describe_space("tiny", destination, cache_dir=str(tmp_path / "cache"))
    assert remote.fingerprint == original.fingerprint
