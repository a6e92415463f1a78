"""Local means local, joining has a deadline, token auth works as documented.

- Without RAY_ADDRESS a run starts a fresh Ray of its own, even when Ray's address file
  names a dead cluster (a bare `ray.init()` followed that file and hung for minutes).
- RAY_ADDRESS naming nothing, or something that never answers, ends in one line and
  exit code 2, quickly.
- Against a head with token authentication, the token alone (RAY_AUTH_TOKEN or
  ~/.ray/auth_token, without RAY_AUTH_MODE) is enough; no token is one clear line.
- Token mode follows the cluster joined, not the presence of ~/.ray/auth_token: a token
  file does not stop a join to a head without authentication, and a setting that
  contradicts the head (RAY_AUTH_MODE=token against no auth, RAY_AUTH_MODE=disabled
  against token auth) is one line naming RAY_AUTH_MODE and what to set, exit 2.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from corpus_utils import write_corpus
from proc_utils import TAG, end_run
from ray_head import free_port, ray_head

from e5ray.executors.ray import auth_setting
from e5ray.executors.ray_auth import RayAuthMismatch, auth_decision

REPO = Path(__file__).resolve().parents[2]


def embed(tmp_path: Path, model_dir: Path, env: dict[str, str], timeout: float = 300, out: str = "out"):
    command = [sys.executable, "-m", "e5ray.cli", "embed", f"--input={tmp_path / 'in'}"]
    command += [f"--output={tmp_path / out}", "--model=tiny", f"--model-path={model_dir}", "--progress=lines"]
    command += ["--executor=ray"]  # the Ray session is what these tests are about
    tag = f"session-{os.getpid()}-{time.monotonic_ns()}"
    started = time.monotonic()
    try:
        done = subprocess.run(
            command, env={**env, "PYTHONPATH": str(REPO), TAG: tag}, capture_output=True, text=True, timeout=timeout
        )
    finally:
        end_run(tag)
    return done, time.monotonic() - started


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without Ray settings and with a HOME of its own (no ~/.ray/auth_token)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "HOME": tempfile.mkdtemp(prefix="home"), **extra}


def test_a_stale_address_file_neither_captures_nor_hangs_a_local_run(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=2, rows=10)
    ray_tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    (ray_tmp / "ray").mkdir()
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{free_port()}")  # nothing listens there
    before = set(Path("/tmp").glob("e5ray-????????"))
    done, _ = embed(tmp_path, bert_model_dir, clean_env(RAY_TMPDIR=str(ray_tmp)), timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "10 embedded" in done.stdout or "20 embedded" in done.stdout
    # Ray's noise stays off the terminal: no GCS retries, no auth warning, no Ray Data blocks,
    # no core_worker constructor line.
    for noise in (
        "Failed to connect to GCS",
        "Connecting to",
        "Token authentication is enabled",
        "Running Dataset",
        "constructor arguments",
        "Progress bars disabled",
    ):
        assert noise not in done.stderr, done.stderr[-3000:]
    assert set(Path("/tmp").glob("e5ray-????????")) <= before, "the local Ray's temp dir was left behind"
    assert not (ray_tmp / "ray" / "session_latest").exists()  # the isolated Ray dir was never used


def test_a_ray_address_where_nothing_listens_fails_at_once_with_one_line(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=1, rows=3)
    address = f"127.0.0.1:{free_port()}"
    done, seconds = embed(tmp_path, bert_model_dir, clean_env(RAY_ADDRESS=address), timeout=120)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("e5ray: error")]
    assert len(lines) == 1 and address in lines[0] and "RAY_AUTH_MODE=unset" in lines[0], done.stderr
    assert "Traceback" not in done.stderr
    assert seconds < 60


def test_a_ray_address_that_never_answers_gives_up_after_the_timeout(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=1, rows=3)
    with socket.socket() as silent:  # accepts connections, never speaks: a hung or foreign service
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        env = clean_env(RAY_ADDRESS=address, E5RAY_RAY_CONNECT_TIMEOUT="8")
        done, seconds = embed(tmp_path, bert_model_dir, env, timeout=180)
    assert done.returncode == 2, done.stderr[-3000:]
    assert f"no answer from the Ray cluster at {address} (RAY_ADDRESS) within 8 s" in done.stderr
    assert seconds < 120


def test_auth_setting_names_the_mode_and_where_the_token_comes_from(tmp_path):
    assert auth_setting({}, tmp_path) == "RAY_AUTH_MODE=unset, no token"
    assert auth_setting({"RAY_AUTH_TOKEN": "s3cret"}, tmp_path) == "RAY_AUTH_MODE=unset, token from RAY_AUTH_TOKEN"
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("s3cret")
    assert auth_setting({"RAY_AUTH_MODE": "token"}, tmp_path) == "RAY_AUTH_MODE=token, token file ~/.ray/auth_token"
    assert "s3cret" not in auth_setting({"RAY_AUTH_TOKEN": "s3cret"}, tmp_path)


def test_token_auth_end_to_end_with_the_token_alone_and_without_one(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=2, rows=8)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    with ray_head() as head:
        # RAY_AUTH_TOKEN without RAY_AUTH_MODE: Ray alone would send no token.
        env = clean_env(RAY_ADDRESS=head.gcs, RAY_AUTH_TOKEN=head.token, HOME=str(home))
        done, _ = embed(tmp_path, bert_model_dir, env, out="out-env")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "16 embedded" in done.stdout

        # The token file alone, as `ray get-auth-token` users keep it.
        (home / ".ray" / "auth_token").write_text(head.token)
        done, _ = embed(tmp_path, bert_model_dir, clean_env(RAY_ADDRESS=head.gcs, HOME=str(home)), out="out-file")
        assert done.returncode == 0, done.stderr[-3000:]

        # No token: one line naming the address and the auth setting, exit 2.
        (home / ".ray" / "auth_token").unlink()
        done, seconds = embed(
            tmp_path, bert_model_dir, clean_env(RAY_ADDRESS=head.gcs, HOME=str(home)), timeout=180, out="out-none"
        )
        assert done.returncode == 2, done.stderr[-3000:]
        line = [x for x in done.stderr.splitlines() if x.startswith("e5ray: error")]
        assert len(line) == 1 and head.gcs in line[0] and "RAY_AUTH_MODE=unset, no token" in line[0], done.stderr


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("e5ray: error")]


def test_the_auth_mode_follows_the_cluster_and_a_contradiction_says_what_to_set(tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("s3cret")
    assert auth_decision("h:1", "disabled", {}, tmp_path) == "disabled"  # the file alone turns nothing on
    assert auth_decision("h:1", "token", {}, tmp_path) == "token"
    with pytest.raises(RayAuthMismatch, match="runs without token authentication.*set RAY_AUTH_MODE=disabled"):
        auth_decision("h:1", "disabled", {"RAY_AUTH_MODE": "token"}, tmp_path)
    with pytest.raises(RayAuthMismatch, match="requires token authentication.*set RAY_AUTH_MODE=token"):
        auth_decision("h:1", "token", {"RAY_AUTH_MODE": "disabled"}, tmp_path)
    with pytest.raises(RayAuthMismatch, match="RAY_AUTH_MODE=unset, no token: set RAY_AUTH_MODE=token"):
        auth_decision("h:1", "token", {}, tmp_path / "elsewhere")


def test_a_token_file_does_not_stop_a_join_to_a_head_without_auth(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=2, rows=8)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text("a-token-of-an-earlier-local-run")
    with ray_head(auth=False) as head:
        done, _ = embed(tmp_path, bert_model_dir, clean_env(RAY_ADDRESS=head.gcs, HOME=str(home)), out="out-file")
        assert done.returncode == 0, done.stderr[-3000:]
        assert "16 embedded" in done.stdout

        # An explicit RAY_AUTH_MODE=token against it: one line, naming the variable and what to set.
        env = clean_env(RAY_ADDRESS=head.gcs, HOME=str(home), RAY_AUTH_MODE="token")
        done, seconds = embed(tmp_path, bert_model_dir, env, timeout=120, out="out-token")
        assert done.returncode == 2, done.stderr[-3000:]
        (line,) = error_lines(done.stderr)
        assert head.gcs in line and "runs without token authentication" in line, done.stderr
        assert "set RAY_AUTH_MODE=disabled" in line and "Traceback" not in done.stderr
        assert seconds < 60


def test_a_head_with_token_auth_refuses_ray_auth_mode_disabled_in_one_line(bert_model_dir, tmp_path):
    write_corpus(tmp_path / "in", shards=1, rows=3)
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    with ray_head() as head:
        (home / ".ray" / "auth_token").write_text(head.token)
        env = clean_env(RAY_ADDRESS=head.gcs, HOME=str(home), RAY_AUTH_MODE="disabled")
        done, seconds = embed(tmp_path, bert_model_dir, env, timeout=120)
        assert done.returncode == 2, done.stderr[-3000:]
        (line,) = error_lines(done.stderr)
        assert head.gcs in line and "requires token authentication" in line and "set RAY_AUTH_MODE=token" in line
        assert head.token not in done.stderr and seconds < 60
