"""A real Ray head on loopback, with token authentication on (or off), for tests that join or submit to it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from proc_utils import TAG, end_run

RAY = str(Path(sys.executable).parent / "ray")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Head:
    gcs: str  # host:port, what RAY_ADDRESS names
    dashboard: str  # http://host:port, the Jobs API
    token: str
    env: dict[str, str]  # this head's environment: PATH with this Python first, the token, the tag


@contextmanager
def ray_head(num_cpus: int = 2, auth: bool = True) -> Iterator[Head]:
    """`ray start --head` with RAY_AUTH_MODE=token (`auth=False`: disabled, no token) and a HOME
    of its own (the real ~/.ray is never touched); only its own processes are ended after."""
    gcs_port, dash_port = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: unix socket paths are limited
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    tag, token = secrets.token_hex(8), secrets.token_hex(16)
    env = {**os.environ, "PATH": path, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token, TAG: tag}
    env["HOME"] = tempfile.mkdtemp(prefix="home", dir=temp_dir)
    if not auth:
        env["RAY_AUTH_MODE"], token = "disabled", ""
        env.pop("RAY_AUTH_TOKEN")
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_TOKEN_PATH", None)
    start = [
        RAY,
        "start",
        "--head",
        f"--port={gcs_port}",
        "--node-ip-address=127.0.0.1",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    started = subprocess.run(start, env=env, capture_output=True, text=True, timeout=180)
    assert started.returncode == 0, started.stderr[-3000:]
    try:
        yield Head(f"127.0.0.1:{gcs_port}", f"http://127.0.0.1:{dash_port}", token, env)
    finally:
        end_run(tag)  # this head's processes only (not `ray stop`, which ends every Ray here)
        shutil.rmtree(temp_dir, ignore_errors=True)
