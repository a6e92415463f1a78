"""The job through Ray's Jobs API: `ray start --head` on loopback, then `ray job submit`."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from corpus_utils import read_output, write_corpus
from proc_utils import TAG, end_run

from e5ray.storage import OutputDir
from e5ray.verify import verify_output

REPO = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head(tmp_path):
    """A real Ray head on loopback with token authentication on (Ray 2.60's default), stopped after."""
    gcs_port, dash_port = free_port(), free_port()
    # Short: Ray's unix sockets live below it and socket paths are limited to ~107 bytes.
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    # The entrypoint's `python` is looked up on PATH: put this environment's first, as an
    # activated virtualenv would.
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    tag = secrets.token_hex(8)
    env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16), TAG: tag}
    start = [
        RAY,
        "start",
        "--head",
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield f"http://127.0.0.1:{dash_port}", env
    finally:
        end_run(tag)  # this head's processes only (not `ray stop`, which ends every Ray here)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_job_submit_runs_the_entrypoint(ray_head, bert_model_dir, tmp_path):
    address, env = ray_head
    texts = write_corpus(tmp_path / "in", shards=2, rows=20)
    out = tmp_path / "out"
    submit = [
        RAY,
        "job",
        "submit",
        f"--address={address}",
        f"--working-dir={REPO}",
        "--",
        "python",
        "jobs/embed_corpus.py",
        f"--input={tmp_path / 'in'}",
        f"--output={out}",
        "--model=tiny",
        f"--model-path={bert_model_dir}",
    ]
    done = subprocess.run(submit, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "succeeded" in done.stdout
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
