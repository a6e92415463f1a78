"""Storage: the output handle, atomic and create-only writes, fsspec info fields."""

from __future__ import annotations

import datetime as dt
import hashlib
import pickle

import pytest

from e5ray.store.filesystem import OutputDir, info_etag, info_seconds, join, sha256_of


def test_an_output_dir_joins_relative_paths_and_reads_back(tmp_path):
    output = OutputDir(str(tmp_path / "out"))
    assert output.is_local and output.path("shards/a") == join(output.root, "shards/a")
    output.write_atomic("shards/a.bin", b"hello")
    assert output.read_bytes("shards/a.bin") == b"hello" and output.size("shards/a.bin") == 5
    assert output.sha256("shards/a.bin") == hashlib.sha256(b"hello").hexdigest()
    assert output.rel(output.path("shards/a.bin")) == "shards/a.bin"
    output.remove("shards/a.bin")
    assert not output.exists("shards/a.bin")


def test_create_only_refuses_an_existing_path(tmp_path):
    output = OutputDir(str(tmp_path))
    output.write_create_only("v1.json", b"first")
    with pytest.raises(FileExistsError):
        output.write_create_only("v1.json", b"second")
    assert output.read_bytes("v1.json") == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["v1.json"]  # no temporary file left


def test_an_output_dir_is_never_shipped_to_another_process(tmp_path):
    with pytest.raises(TypeError, match="ship its URI to workers"):
        pickle.dumps(OutputDir(str(tmp_path)))


def test_sha256_of_streams_the_whole_file(tmp_path):
    import fsspec

    data = bytes(range(256)) * 40_000  # larger than one 4 MiB block
    (tmp_path / "f").write_bytes(data)
    assert sha256_of(fsspec.filesystem("file"), str(tmp_path / "f")) == hashlib.sha256(data).hexdigest()


def test_info_fields_are_read_the_same_from_every_filesystem():
    assert info_etag({"ETag": '"abc"'}) == "abc" and info_etag({"etag": "x"}) == "x" and info_etag({}) is None
    when = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    assert info_seconds({"LastModified": when}) == when.timestamp()
    assert info_seconds({"mtime": 12.5}) == 12.5 and info_seconds({}) == 0.0
