"""The job through Ray's Jobs API: `ray start --head` on loopback, then `ray job submit`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from corpus_utils import read_output, write_corpus
from ray_head import RAY
from ray_head import ray_head as start_ray_head

from e5ray.output.verify import verify_output
from e5ray.store.filesystem import OutputDir

REPO = Path(__file__).resolve().parents[2]


def wait_for_job_agent(address: str, env: dict[str, str], timeout: float = 120.0) -> None:
    """The head answers before its dashboard does: wait until the Jobs API lists jobs."""
    deadline = time.monotonic() + timeout
    while True:
        listed = subprocess.run([RAY, "job", "list", f"--address={address}"], env=env, capture_output=True, timeout=60)
        if listed.returncode == 0 or time.monotonic() > deadline:
            return
        time.sleep(2)


def submit(command: list[str], env: dict[str, str], timeout: float = 400.0) -> subprocess.CompletedProcess[str]:
    """`ray job submit`, again while the head's job agent is not up yet (a loaded machine):
    the refused submission created no job, so a retry cannot run it twice. The agent took
    over 120 s to come up once with the load average at 8 on 2 CPUs."""
    deadline = time.monotonic() + 300
    while True:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if "No available agent to submit job" not in done.stderr or time.monotonic() > deadline:
            return done
        time.sleep(3)


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on loopback with token authentication on (Ray 2.60's default), stopped after."""
    with start_ray_head(num_cpus=2) as head:
        wait_for_job_agent(head.dashboard, head.env)
        yield head.dashboard, head.env


def test_job_submit_from_a_clean_clone_with_a_staged_model(ray_head, bert_model_dir, tmp_path):
    """What a new user does: clone, stage the model outside the working dir (git-ignored
    files are not uploaded), submit with a runtime env."""
    address, env = ray_head
    clone = tmp_path / "clone"
    cloned = subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], capture_output=True, text=True, timeout=120)
    assert cloned.returncode == 0, cloned.stderr
    staged = tmp_path / "models" / "tiny"
    stage = subprocess.run(
        [sys.executable, "-m", "e5ray.cli", "stage-model", "tiny", str(staged), f"--model-path={bert_model_dir}"],
        env={**env, "PYTHONPATH": str(clone)},
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stage.returncode == 0, stage.stderr
    assert (staged / "SHA256SUMS").is_file() and "SHA256SUMS checked" in stage.stdout

    texts = write_corpus(tmp_path / "in", shards=2, rows=20)
    out = tmp_path / "out"
    runtime_env = json.dumps({"env_vars": {"E5RAY_CACHE": str(tmp_path / "cache")}})
    command = [
        RAY,
        "job",
        "submit",
        f"--address={address}",
        f"--working-dir={clone}",
        f"--runtime-env-json={runtime_env}",
        "--",
        "python",
        "jobs/embed_corpus.py",
        f"--input={tmp_path / 'in'}",
        f"--output={out}",
        "--model=tiny",
        f"--model-path={staged}",
        "--executor=ray",  # embedded on the cluster, not in the job's driver
    ]
    done = submit(command, env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout
    assert "e5ray: done in" in done.stdout  # the job's summary reaches the submitting shell
    assert set(read_output(str(out))) == set(texts)
    assert verify_output(OutputDir(str(out))) == []

    # Without the token the cluster refuses the submission.
    no_token = {k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN"}
    refused = subprocess.run(
        [RAY, "job", "list", f"--address={address}"],
        env={**no_token, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode != 0


def test_every_pin_in_the_runtime_env_example_and_cluster_yaml_is_the_locked_version():
    pins = _load_pins_script()
    lock = pins.read_lock()
    assert {"ray", "onnxruntime", "tokenizers", "pyarrow", "numpy"} <= lock.keys()
    assert pins.pins_in(REPO / "examples" / "runtime_env.yaml"), "the runtime env example pins nothing"
    assert pins.differences(lock) == []


def test_a_pin_that_differs_from_the_lock_is_named():
    pins = _load_pins_script()
    lock = pins.read_lock()
    stale = dict(lock, filelock="0.0.1")
    assert pins.differences(stale) == [f"examples/runtime_env.yaml: filelock=={lock['filelock']}, the lock has 0.0.1"]


def _load_pins_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("pins", REPO / ".ci" / "pins.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
