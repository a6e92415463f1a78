"""A big unit's output goes up in parts while it is written (e5ray.store.stream_upload), on a real S3
server (SeaweedFS): the parts leave before the file is closed, the hash is the file's, the final
name appears only by the copy at the end, and an aborted upload leaves nothing behind."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import numpy as np
import pytest
from corpus_utils import write_shard
from job_utils import s3_config

from e5ray.job.run import run_job
from e5ray.output.verify import verify_output
from e5ray.store import stream_upload
from e5ray.store.filesystem import OutputDir
from e5ray.store.stream_upload import StreamingUpload

PART = 5 * 2**20  # S3's smallest part


def wait_until(predicate, seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def append(path: Path, n: int, seed: int) -> bytes:
    data = np.random.default_rng(seed).bytes(n)
    with open(path, "ab") as f:
        f.write(data)
    return data


@pytest.fixture
def output(s3_server, s3_bucket, s3_env) -> OutputDir:
    return OutputDir(f"s3://{s3_bucket}/out")


def test_parts_leave_while_the_file_grows_and_the_copy_lands_it_under_its_final_name(output, tmp_path):
    local = tmp_path / ".unit.host~1.x.parquet.tmp"
    local.touch()
    upload = StreamingUpload(output, str(local), "shards/.unit.host~1.x.parquet.tmp", part_bytes=PART).start()
    written = append(local, PART + 1000, seed=1)
    assert wait_until(lambda: upload.sent >= PART), "no part was sent while the file was still open"
    written += append(local, PART // 2, seed=2)  # the rest, then the writer closes the file
    sha, size = upload.finish() or ("", 0)
    assert upload.sent_before_finish >= PART
    assert (sha, size) == (hashlib.sha256(written).hexdigest(), len(written))
    assert not output.fs.exists(output.path("shards/final.parquet"))  # nothing under the name before the copy
    upload.place("shards/final.parquet")
    upload.abort()  # what the worker's clean-up does after a commit: nothing to undo
    assert output.fs.cat_file(output.path("shards/final.parquet")) == written
    assert not output.fs.exists(output.path(upload.temp_rel))


def test_a_file_under_one_part_never_starts_an_upload(output, tmp_path):
    local = tmp_path / "small.tmp"
    local.write_bytes(b"x" * 1000)
    upload = StreamingUpload(output, str(local), "shards/small.tmp", part_bytes=PART).start()
    assert upload.finish() is None  # the caller takes the one-PUT path
    assert not output.fs.exists(output.path("shards/small.tmp"))


def test_an_aborted_upload_leaves_no_object_and_no_open_multipart_upload(output, tmp_path):
    local = tmp_path / "big.tmp"
    append(local, 2 * PART + 10, seed=3)
    upload = StreamingUpload(output, str(local), "shards/big.tmp", part_bytes=PART).start()
    assert wait_until(lambda: upload.sent >= 2 * PART)
    upload.abort()  # the unit failed before its commit
    bucket = output.root.split("/", 1)[0]
    assert not output.fs.exists(output.path("shards/big.tmp"))
    assert output.fs.list_multipart_uploads(bucket) == []


def test_an_error_while_following_fails_the_finish_instead_of_committing_a_short_file(output, tmp_path):
    local = tmp_path / "gone.tmp"
    append(local, PART + 10, seed=4)
    upload = StreamingUpload(output, str(local), "shards/gone.tmp", part_bytes=PART)
    os.unlink(local)  # the follower cannot read it
    upload.start()
    with pytest.raises(FileNotFoundError):
        upload.finish()


def test_a_job_on_s3_streams_a_big_unit_and_its_output_verifies(
    s3_server, s3_bucket, s3_env, bert_model_dir, monkeypatch
):
    fs = s3_server.filesystem()
    n = 30_000  # ~6.5 MB of tiny-model vectors, ids and hashes: more than one 5 MiB part
    write_shard(f"{s3_bucket}/corpus/part-0000.parquet", list(range(n)), [f"w{i}" for i in range(n)], fs=fs)
    monkeypatch.setattr(stream_upload, "PART_BYTES", PART)
    results: list[tuple[str, int] | None] = []
    finish = StreamingUpload.finish

    def recording(self: StreamingUpload) -> tuple[str, int] | None:
        results.append(finish(self))
        return results[-1]

    monkeypatch.setattr(StreamingUpload, "finish", recording)
    manifest = run_job(s3_config(s3_bucket, bert_model_dir, unit_rows=10**6))
    (entry,) = manifest.shards
    (ref,) = entry.files
    assert results and results[0] is not None, "the unit's output did not take the streamed path"
    assert results[0] == (ref.sha256, ref.bytes) and entry.rows == n
    out = OutputDir(f"s3://{s3_bucket}/embeddings")
    assert hashlib.sha256(out.fs.cat_file(out.path(ref.path))).hexdigest() == ref.sha256
    assert not [p for p in out.fs.find(out.path("shards")) if p.endswith(".tmp")]  # no temporary object left
    assert verify_output(out) == []
