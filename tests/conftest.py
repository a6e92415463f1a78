"""Shared pytest fixtures.

Sections (add new fixtures under a heading of their own):
  * S3: a real local S3 endpoint (SeaweedFS ``weed mini``, see tests/s3server.py)
  * Models: tiny random-weight encoders
  * Ray: one real local Ray per test module
  * Runs: what a run reads
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import uuid

import pytest

try:  # tests/ as a package (tests/__init__.py present)
    from .s3server import SeaweedS3, require_weed
except ImportError:  # rootdir-relative "prepend" import mode, no __init__.py
    from s3server import SeaweedS3, require_weed


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------

_bucket_counter = itertools.count()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """One SeaweedFS S3 server for the whole session, on free loopback ports.

    Skips (does not fail) the requesting tests when the ``weed`` binary is not
    installed; set E5RAY_REQUIRE_S3=1 (e.g. in CI) to turn that into an error.
    """
    require_weed()
    server = SeaweedS3(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, uniquely named, empty bucket; yields its name."""
    # S3 bucket names: 3-63 chars, lowercase letters, digits and hyphens.
    name = f"t{os.getpid()}-{next(_bucket_counter)}-{uuid.uuid4().hex[:8]}"
    s3_server.make_bucket(name)
    yield name


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point AWS SDKs (boto, s3fs, pyarrow) in this process at the test server.

    Returns the dict of variables that were set, handy for subprocess ``env=``.
    """
    env = s3_server.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    # Don't let a developer's real profile/config leak into tests.
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    return env


# ---------------------------------------------------------------------------
# Models: tiny random-weight encoders written once per session (no downloads)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def bert_model_dir(tmp_path_factory):
    """A tiny BERT-typed E5-like model (token_type_ids input, pad id 0), like multilingual-e5-small."""
    from e5ray.testing import write_test_model

    return write_test_model(tmp_path_factory.mktemp("bert-model"), arch="bert", seed=1)


@pytest.fixture(scope="session")
def xlmr_model_dir(tmp_path_factory):
    """A tiny XLM-R-typed model (no token_type_ids, pad id 1, offset positions), like multilingual-e5-large."""
    from e5ray.testing import write_test_model

    return write_test_model(tmp_path_factory.mktemp("xlmr-model"), arch="xlmr", seed=2)


# ---------------------------------------------------------------------------
# Ray: a real local Ray, 2 CPUs, loopback only, started explicitly (never joining another)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray(request):
    """A real local Ray with 2 CPUs (the size of the machines this must finish on), on loopback.

    Workers inherit the environment at start, so the test S3 credentials are set first
    when the S3 server is available, as a user's would be (or come from each node's
    instance role on a cluster).
    """
    ray = pytest.importorskip("ray")
    try:
        env = request.getfixturevalue("s3_server").env()
    except pytest.skip.Exception:  # no weed binary: Ray without S3 credentials
        env = {}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    # address="local" and a temp dir of its own: a bare ray.init() would join whatever cluster
    # Ray's address file names (another session's, or a dead one). Short: socket paths.
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="WARNING",
        _node_ip_address="127.0.0.1",
        _temp_dir=temp_dir,
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


@pytest.fixture
def reads(monkeypatch) -> list[str]:
    """relpaths of the source shards a run reads (carried shards must not be read)."""
    from e5ray.worker import unit_rows  # every path reads a unit through its validated chunks

    seen: list[str] = []
    original = unit_rows.read_chunks

    def recording(shard, *args, **kwargs):
        if shard.relpath not in seen:  # with row reuse a shard is read twice (e5ray.worker.reuse_unit): count it once
            seen.append(shard.relpath)
        return original(shard, *args, **kwargs)

    monkeypatch.setattr(unit_rows, "read_chunks", recording)
    return seen
