"""Storage that refuses or stops answering: one error line, bounded time, nothing lost.

A SeaweedFS server of this module's own (so freezing it cannot disturb other tests) with
two restricted identities besides the test admin: one that may only read one bucket,
one confined to a bucket that does not exist (SeaweedFS creates a missing bucket on the
first write of an unrestricted identity).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus_utils import embed_job, make_texts, write_shard
from s3server import freezable_server

from e5ray.cli.app import main as cli_main
from e5ray.config import JobConfig
from e5ray.errors import DeadlineExceeded, StorageError, StorageUnavailableError
from e5ray.executors.local import run_local
from e5ray.job.run import run_job
from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir
from e5ray.store.timeouts import StoragePolicy

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BUCKET = "faults"
READER = {"name": "reader", "credentials": [{"accessKey": "reader-key", "secretKey": "reader-secret"}]}
READER["actions"] = [f"Read:{BUCKET}", f"List:{BUCKET}"]
CONFINED = {"name": "confined", "credentials": [{"accessKey": "confined-key", "secretKey": "confined-secret"}]}
CONFINED["actions"] = ["Read:nosuchbucket", "List:nosuchbucket", "Write:nosuchbucket"]
FAST = {"s3_connect_timeout": 1.0, "s3_read_timeout": 2.0, "s3_attempts": 2}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("seaweedfs-faults")
    with freezable_server(base, BUCKET, extra_identities=[READER, CONFINED]) as srv:
        yield srv


@pytest.fixture
def env(server, monkeypatch, tmp_path):
    """The admin's credentials in this process; no profile, no instance metadata lookups."""
    import s3fs

    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # credentials are read when an instance connects
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def corpus(server, env, request):
    """s3://faults/<test>/corpus with two shards; returns (input, output) URIs."""
    base = f"{BUCKET}/{request.node.name[:40]}"
    fs = server.filesystem()
    for s in range(2):
        write_shard(f"{base}/corpus/p{s}.parquet", list(range(100 * s, 100 * s + 20)), make_texts(20, s), fs)
    return f"s3://{base}/corpus", f"s3://{base}/emb"


def config(inp: str, out: str, model_dir: Any, **kw: Any) -> JobConfig:
    kw.setdefault("executor", "local")
    return JobConfig.from_options(input=inp, output=out, model="tiny", model_path=str(model_dir), **kw)


CASES = {
    "wrong secret": ({"AWS_SECRET_ACCESS_KEY": "not-the-secret"}, "the secret key does not match the access key"),
    "unknown key": ({"AWS_ACCESS_KEY_ID": "nobody", "AWS_SECRET_ACCESS_KEY": "x"}, "the access key is not known"),
    "no credentials": ({"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, "no S3 credentials found"),
    "access denied": ({"AWS_ACCESS_KEY_ID": "reader-key", "AWS_SECRET_ACCESS_KEY": "reader-secret"}, "access denied"),
    "missing bucket": (
        {"AWS_ACCESS_KEY_ID": "confined-key", "AWS_SECRET_ACCESS_KEY": "confined-secret"},
        "no such bucket",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_credential_failure_is_one_line_with_operation_and_uri(case, server, corpus, env, bert_model_dir, capsys):
    inp, out = corpus
    run_job(config(inp, out, bert_model_dir))  # a committed output to verify and collect
    server.filesystem().pipe_file(f"{out.removeprefix('s3://')}/shards/orphan.tmp", b"x")  # gc must delete it
    changes, reason = CASES[case]
    for key, value in changes.items():
        if value is None:
            env.delenv(key, raising=False)
        else:
            env.setenv(key, value)
    if case == "missing bucket":
        inp, out = "s3://nosuchbucket/corpus", "s3://nosuchbucket/emb"
    common = ["--s3-connect-timeout", "2", "--s3-read-timeout", "5"]
    commands = {
        "embed": ["embed", "--input", inp, "--output", out, "--model", "tiny", "--model-path", str(bert_model_dir)]
        + ["--executor", "local", "--quiet", *common],
        "verify": ["verify", out, *common],
        "gc": ["gc", out, "--keep", "1", "--min-age", "0", *common],
    }
    if case == "access denied":
        commands.pop("verify")  # reading is allowed to this identity: verify succeeds
    for name, argv in commands.items():
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        assert cli_main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, (name, err)
        assert err[0].startswith("e5ray: error: StorageError: ") and reason in err[0], (name, err)
        uri = inp if (name == "embed" and case != "access denied") else out
        assert uri in err[0], (name, err)


def test_the_command_line_prints_one_line_and_a_traceback_only_with_debug(server, corpus, bert_model_dir):
    _, out = corpus
    env = {**os.environ, **server.env(), "AWS_SECRET_ACCESS_KEY": "wrong", "PYTHONPATH": str(REPO)}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    argv = [sys.executable, "-m", "e5ray.cli", "verify", out, "--s3-read-timeout", "5"]
    plain = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 2
    assert plain.stderr.strip().splitlines() == [
        f"e5ray: error: StorageError: verifying {out}: the secret key does not match the access key "
        "(check AWS_SECRET_ACCESS_KEY)"
    ]
    debug = subprocess.run([*argv, "--log-level", "debug"], env=env, capture_output=True, text=True, timeout=120)
    assert (
        debug.returncode == 2
        and "Traceback" in debug.stderr
        and debug.stderr.strip().endswith("AWS_SECRET_ACCESS_KEY)")
    )


def test_a_frozen_store_fails_the_run_within_the_timeout_then_the_next_run_resumes(server, corpus, bert_model_dir):
    inp, out = corpus
    v1 = run_job(config(inp, out, bert_model_dir, **FAST))
    fs = server.filesystem()
    base = inp.removeprefix("s3://").rsplit("/", 1)[0]
    for s in range(2, 5):
        write_shard(f"{base}/corpus/p{s}.parquet", list(range(100 * s, 100 * s + 20)), make_texts(20, s), fs)
    bound = StoragePolicy(**{k.removeprefix("s3_"): v for k, v in FAST.items()}).worst_case_s()
    frozen: dict[str, float] = {}

    def executor(tasks, spec, compute) -> Iterator[Any]:
        results = run_local(tasks, spec, compute)
        yield next(results)  # one shard finished, then the store stops answering
        os.kill(server.proc.pid, signal.SIGSTOP)
        frozen["at"] = time.monotonic()
        yield from results

    try:
        with pytest.raises(StorageUnavailableError) as caught:
            run_job(config(inp, out, bert_model_dir, **FAST), executor=executor)
        elapsed = time.monotonic() - frozen["at"]
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith("embedding s3://") and server.endpoint_url in message and "did not answer" in message
    print(f"frozen store: the run failed {elapsed:.1f} s after SIGSTOP (one call's bound {bound:.1f} s)")
    assert elapsed < bound + 3, (elapsed, bound)
    # the previous version is intact, and the next run resumes: the finished shard is reused
    assert json.loads(fs.cat_file(f"{out.removeprefix('s3://')}/manifest.json"))["version"] == v1.version
    assert verify_output(OutputDir(out)) == []
    v2 = embed_job(config(inp, out, bert_model_dir, **FAST))
    assert (v2["run"]["reused_shards"], v2["run"]["embedded_shards"]) == (1, 2)
    assert v2["totals"]["embedded"] == 100 and verify_output(OutputDir(out)) == []


def test_the_deadline_ends_a_run_that_waits(tmp_path, bert_model_dir):
    inp, out = tmp_path / "in", tmp_path / "out"
    write_shard(inp / "a.parquet", [1, 2], ["one", "two"])
    stop = threading.Event()

    def stuck(tasks, spec, compute) -> Iterator[Any]:
        stop.wait(60)  # a wait that never returns by itself
        yield from run_local(tasks, spec, compute)

    started = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"--deadline 2s passed while embedding shards; nothing was committed"):
        run_job(config(str(inp), str(out), bert_model_dir, deadline=2), executor=stuck)
    assert time.monotonic() - started < 6
    assert not (out / "manifest.json").exists() and not list((out / "leases").glob("*.json"))
    assert (
        cli_main(
            ["embed", "--input", str(inp), "--output", str(out), "--model", "tiny"]
            + ["--model-path", str(bert_model_dir), "--executor", "local", "--quiet", "--deadline", "0.001"]
        )
        == 6
    )


def test_storage_errors_are_classified_from_their_causes():
    from botocore.exceptions import ClientError, ReadTimeoutError

    from e5ray.store.failures import describe

    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    try:
        try:
            raise denied
        except ClientError as exc:
            raise PermissionError("Access Denied") from exc
    except PermissionError as wrapped:
        found = describe(wrapped, "committing a version to", "s3://b/out")
    assert (
        isinstance(found, StorageError)
        and str(found) == "committing a version to s3://b/out: access denied for these credentials"
    )
    timeout = ReadTimeoutError(endpoint_url="http://store:9000")
    found = describe(timeout, "listing the input", "s3://b/in")
    assert isinstance(found, StorageUnavailableError) and "http://store:9000 did not answer" in str(found)
    assert describe(ValueError("a bug"), "x", "y") is None


def ray_running() -> bool:
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def test_wrong_credentials_for_a_model_on_s3_are_found_while_planning_before_the_pool_starts(
    server, env, bert_model_dir, tmp_path, capsys
):
    """Cheap checks first: the driver lists (and stages) a remote model while it plans, so a
    model it cannot read ends the run before a Ray pool is asked for and before anything is embedded."""
    import s3fs

    model = f"s3://{BUCKET}/{tmp_path.name}/model"
    server.filesystem().put(str(bert_model_dir), model.removeprefix("s3://"), recursive=True)
    inp, out = tmp_path / "in", tmp_path / "out"
    for s in range(2):
        write_shard(inp / f"p{s}.parquet", list(range(100 * s, 100 * s + 5)), make_texts(5, s))
    env.setenv("E5RAY_CACHE", str(tmp_path / "cache"))  # nothing staged before
    env.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    s3fs.S3FileSystem.clear_instance_cache()
    ray_before = ray_running()
    argv = ["embed", "--input", str(inp), "--output", str(out), "--model", "tiny", "--model-path", model]
    assert cli_main([*argv, "--executor", "ray", "--quiet", "--s3-connect-timeout", "2", "--s3-read-timeout", "5"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"e5ray: error: StorageError: staging the model from {model}"), line
    assert "the secret key does not match the access key" in line, line
    assert ray_before or not ray_running()  # no pool, not even a Ray, was started
    assert [p for p in out.rglob("*") if p.is_file()] == []  # 0 units embedded: no shard, marker or lease
