"""A store that stops answering, at every phase of a run: each run ends in bounded time.

The store (a SeaweedFS of this module's own) is frozen with SIGSTOP, which keeps accepting
TCP connections and never answers, at the entry of one phase of `e5ray embed`: staging
the model from S3, listing the input, reading footers, the first unit, mid-units,
writing a checkpoint, the duplicate-id check, the commit. Every case must end with exit
code 5 and one `e5ray: error:` line naming the endpoint and what the run was doing,
within twice one call's bound (`StoragePolicy.worst_case_s`) of the freeze; the previous
version stays; the next run, store thawed, commits every id exactly once.

Short timeouts keep it lean (1 s connect, 2 s read, 2 attempts: one call's bound 7 s).
`test_with_default_timeouts_a_store_frozen_mid_run_ends_the_run_within_180_s` runs the
defaults (one call's bound 123 s) once, in a process of its own that runs beside the other cases.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from corpus_utils import make_texts, read_output, write_shard
from s3server import SeaweedS3, freezable_server

from e5ray.cli.app import main as cli_main
from e5ray.store.timeouts import StoragePolicy

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
BUCKET = "freeze"
FAST = StoragePolicy(connect_timeout=1.0, read_timeout=2.0, attempts=2)
SHARDS_V1, SHARDS_V2, ROWS = 2, 5, 12


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    with freezable_server(tmp_path_factory.mktemp("seaweedfs-freeze"), BUCKET) as srv:
        yield srv


@pytest.fixture
def env(server: SeaweedS3, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[pytest.MonkeyPatch]:
    import s3fs

    for key, value in server.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("E5RAY_CACHE", str(tmp_path / "model-cache"))  # a model on S3 is staged afresh
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()


class Freezer:
    """SIGSTOPs the store (once) when a patched function is entered; SIGCONT on `thaw`."""

    def __init__(self, server: SeaweedS3) -> None:
        self.server, self.at = server, None

    def freeze(self) -> None:
        if self.at is None:
            assert self.server.proc is not None
            os.kill(self.server.proc.pid, signal.SIGSTOP)
            self.at = time.monotonic()

    def on_new_marker(self, base: str) -> threading.Thread:
        """Freeze as soon as a unit of the running job writes its completion marker (polled):
        in a Ray run, the first result reaches the driver only after a whole task is done."""
        fs = self.server.filesystem()
        folder = f"{base}/emb/markers"
        before = set(fs.ls(folder)) if fs.exists(folder) else set()

        def watch() -> None:
            while self.at is None:
                try:
                    if set(fs.ls(folder, refresh=True)) - before:
                        self.freeze()
                except FileNotFoundError:
                    pass
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        return watcher

    def thaw(self) -> None:
        if self.server.proc is not None:
            os.kill(self.server.proc.pid, signal.SIGCONT)

    def patch(self, monkeypatch: pytest.MonkeyPatch, target: str, nth: int = 1) -> None:
        """Freeze when `target` ("module.function" or "module.Class:method") is entered the `nth` time."""
        module, attr = target.rsplit(".", 1)
        owner: Any = __import__(module, fromlist=["_"])
        if ":" in attr:  # module.Class:method
            cls, attr = attr.split(":")
            owner = getattr(owner, cls)
        original: Callable[..., Any] = getattr(owner, attr)
        calls = [0]

        def freezing(*args: Any, **kwargs: Any) -> Any:
            calls[0] += 1
            if calls[0] == nth:
                self.freeze()
            return original(*args, **kwargs)

        monkeypatch.setattr(owner, attr, freezing)


def write_corpus(server: SeaweedS3, base: str, shards: int, rows_each: int = ROWS) -> set[int]:
    fs, ids = server.filesystem(), set()
    for s in range(shards):
        rows = list(range(1000 * s, 1000 * s + rows_each))
        write_shard(f"{base}/corpus/p{s}.parquet", rows, make_texts(rows_each, s), fs)
        ids.update(rows)
    return ids


def embed_argv(base: str, model: str, executor: str, policy: StoragePolicy | None) -> list[str]:
    argv = ["embed", "--input", f"s3://{base}/corpus", "--output", f"s3://{base}/emb", "--model", "tiny"]
    argv += ["--model-path", model, "--executor", executor, "--quiet"]
    if policy is not None:
        argv += ["--s3-connect-timeout", str(policy.connect_timeout), "--s3-read-timeout", str(policy.read_timeout)]
        argv += ["--s3-attempts", str(policy.attempts)]
    return argv


def manifest_version(server: SeaweedS3, base: str) -> int:
    return int(json.loads(server.filesystem().cat_file(f"{base}/emb/manifest.json"))["version"])


def frozen_run(
    server: SeaweedS3,
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    base: str,
    target: str,
    *,
    model: str,
    executor: str = "local",
    policy: StoragePolicy | None = FAST,
    shards: int = SHARDS_V2,
    rows_each: int = ROWS,
) -> tuple[float, str]:
    """v1 on a smaller corpus, then the freeze in a run on the whole one, then the resume:
    returns (seconds from the freeze to the exit, the error line)."""
    write_corpus(server, base, SHARDS_V1)
    assert cli_main(embed_argv(base, model, executor, policy)) == 0
    v1 = manifest_version(server, base)
    everything = write_corpus(server, base, shards, rows_each)
    capsys.readouterr()
    freezer = Freezer(server)
    with pytest.MonkeyPatch.context() as mp:
        if target == "a new marker":
            freezer.on_new_marker(base)
        else:
            freezer.patch(mp, target)
        try:
            code = cli_main(embed_argv(base, model, executor, policy))
            assert freezer.at is not None, "the phase was never reached"
            elapsed = time.monotonic() - freezer.at
        finally:
            freezer.thaw()
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("e5ray: error:")]
    assert code == 5 and len(lines) == 1, (code, lines)
    assert server.endpoint_url in lines[0] and "did not answer" in lines[0], lines
    assert manifest_version(server, base) == v1  # the previous version is intact
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    assert cli_main(embed_argv(base, model, executor, policy)) == 0  # the next run resumes
    assert set(read_output(f"s3://{base}/emb", server.filesystem())) == everything  # every id, once
    return elapsed, lines[0]


# phase -> (the function whose first call freezes the store, words of the error line)
PHASES: dict[str, tuple[str, str]] = {
    "model staging": ("e5ray.model.resolve.stage_remote_dir", "staging the model from s3://"),
    "listing the input": ("e5ray.job.plan.discover", "listing the input s3://"),
    # footers, then the completion markers: the first call that meets the frozen store names its step
    "reading footers": ("e5ray.job.plan.read_footers", "s3://"),
    "the first unit": ("e5ray.job.run.embed_units", "embedding s3://"),
    "mid-units": ("e5ray.job.embed._record", "embedding s3://"),
    # checkpoints are a cache written in a thread: the next unit's call is what fails the run
    "checkpointing": ("e5ray.job.checkpoints.CheckpointWriter:_write", "embedding s3://"),
    "the duplicate check": ("e5ray.job.precommit.resolve_duplicates", "checking the new version of s3://"),
    "the commit": ("e5ray.job.run.commit", "committing a version to s3://"),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("phase", list(PHASES))
def test_a_store_frozen_at_any_phase_ends_the_run_within_twice_one_calls_bound(
    phase: str, server: SeaweedS3, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bert_model_dir: Path
) -> None:
    target, words = PHASES[phase]
    base = f"{BUCKET}/local-{phase.replace(' ', '-')}"
    model = str(bert_model_dir)
    if phase == "model staging":
        model = f"s3://{base}/model"
        server.filesystem().put(str(bert_model_dir), model.removeprefix("s3://"), recursive=True)
    if phase == "checkpointing":
        env.setattr("e5ray.job.checkpoints.EVERY_UNITS", 1)  # a checkpoint after every unit

    elapsed, line = frozen_run(server, env, capsys, base, target, model=model)
    bound = FAST.worst_case_s()
    print(f"{phase}: exit 5 {elapsed:.1f} s after the freeze (one call's bound {bound:.0f} s): {line}")
    assert words in line, line
    assert elapsed <= 2 * bound, (phase, elapsed, bound)


@pytest.mark.timeout(240)
def test_a_store_frozen_mid_units_ends_a_ray_run_within_twice_one_calls_bound(
    server: SeaweedS3, env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], bert_model_dir: Path
) -> None:
    pytest.importorskip("ray")
    import ray

    try:
        elapsed, line = frozen_run(
            server,
            env,
            capsys,
            f"{BUCKET}/ray-mid-units",
            "a new marker",  # the driver hears of a unit only when its whole task is done
            model=str(bert_model_dir),
            executor="ray",
            shards=8,
            rows_each=300,
        )
    finally:
        ray.shutdown()
    bound = FAST.worst_case_s()
    print(f"ray, mid-units: exit 5 {elapsed:.1f} s after the freeze (one call's bound {bound:.0f} s): {line}")
    assert "embedding s3://" in line and elapsed <= 2 * bound, (elapsed, line)


# The defaults case waits ~2 minutes on timeouts with nothing to compute, so it runs in a process
# of its own, started with this module's first test, beside the other cases (which take as long):
# the suite pays its wait once, not on top of them. The child freezes its own store as the matrix
# does (`e5ray.job.embed._record`: mid-units) and prints the exit code and seconds since the freeze.
DEFAULTS_CHILD = """
import json, os, signal, sys, time
import e5ray.job.embed as embed
from e5ray.cli.app import main

pid, v1_argv, argv = int(sys.argv[1]), json.loads(sys.argv[2]), json.loads(sys.argv[3])
assert main(v1_argv) == 0
open(sys.argv[4], "w").write("v1 done")  # the parent writes the whole corpus now
while open(sys.argv[4]).read() != "corpus written":
    time.sleep(0.05)
record, at = embed._record, []

def freezing(*args, **kwargs):
    if not at:
        os.kill(pid, signal.SIGSTOP)
        at.append(time.monotonic())
    return record(*args, **kwargs)

embed._record = freezing
code = main(argv)
os.kill(pid, signal.SIGCONT)
print(json.dumps({"code": code, "elapsed": time.monotonic() - at[0] if at else None}), flush=True)
"""


@pytest.fixture(scope="module", autouse=True)
def defaults_case(
    tmp_path_factory: pytest.TempPathFactory, bert_model_dir: Path
) -> Iterator[tuple[SeaweedS3, str, subprocess.Popen[str], set[int]]]:
    """The defaults case's own store and child process, running while the module's other tests do."""
    folder = tmp_path_factory.mktemp("seaweedfs-defaults")
    with freezable_server(folder, BUCKET) as server:
        base = f"{BUCKET}/defaults-mid-units"
        write_corpus(server, base, SHARDS_V1)
        argv = embed_argv(base, str(bert_model_dir), "local", None)
        handshake = folder / "handshake"
        handshake.write_text("")
        env = {**os.environ, **server.env(), "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(REPO)}
        env |= {"AWS_SHARED_CREDENTIALS_FILE": str(folder / "none"), "AWS_CONFIG_FILE": str(folder / "none")}
        env |= {"E5RAY_CACHE": str(folder / "model-cache")}
        env.pop("AWS_PROFILE", None)
        assert server.proc is not None
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                DEFAULTS_CHILD,
                str(server.proc.pid),
                json.dumps(argv),
                json.dumps(argv),
                str(handshake),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while handshake.read_text() != "v1 done":
            assert child.poll() is None and time.monotonic() < deadline, child.communicate()[1][-3000:]
            time.sleep(0.05)
        everything = write_corpus(server, base, SHARDS_V2)
        handshake.write_text("corpus written")
        try:
            yield server, base, child, everything
        finally:
            if child.poll() is None:
                child.kill()
                child.communicate()


@pytest.mark.timeout(400)
def test_with_default_timeouts_a_store_frozen_mid_run_ends_the_run_within_180_s(
    defaults_case: tuple[SeaweedS3, str, subprocess.Popen[str], set[int]], bert_model_dir: Path
) -> None:
    server, base, child, everything = defaults_case
    out, err = child.communicate(timeout=360)
    result = json.loads(out.strip().splitlines()[-1])
    lines = [line for line in err.splitlines() if line.startswith("e5ray: error:")]
    print(f"defaults, mid-units: exit {result['code']} {result['elapsed']:.1f} s after the freeze: {lines}")
    assert result["code"] == 5 and len(lines) == 1, (result, err[-3000:])
    assert server.endpoint_url in lines[0] and "embedding s3://" in lines[0], lines
    assert result["elapsed"] <= 180, result
    assert manifest_version(server, base) == 1  # the previous version is intact
    # the next run resumes to every id once (short timeouts: the store answers again)
    env = {**server.env(), "AWS_EC2_METADATA_DISABLED": "true"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
        assert cli_main(embed_argv(base, str(bert_model_dir), "local", FAST)) == 0
        s3fs.S3FileSystem.clear_instance_cache()
    assert set(read_output(f"s3://{base}/emb", server.filesystem())) == everything
