"""Running a `python -m e5ray.bench` subcommand as a user does, for the tests that keep the benchmarks from rotting."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_bench(
    subcommand: str,
    args: list[str],
    cwd: Path,
    timeout: int = 300,
    drop_env: Iterable[str] = (),
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`python -m e5ray.bench <subcommand> args` with this checkout importable and its own local
    Ray (never the cluster in RAY_ADDRESS); fails the test with the tail of its stderr when it fails."""
    env = {**os.environ, **(extra_env or {}), "PYTHONPATH": str(REPO)}
    for name in ("RAY_ADDRESS", *drop_env):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "e5ray.bench", subcommand, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done
