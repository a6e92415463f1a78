"""Driver cost at scale: S3 requests and wall time of planning, resume, refresh and verify.

    python -m e5ray.bench driver --small-files 5000 --split-files 50 --row-groups 100 --kill-after 5000
    python -m e5ray.bench driver ... --scale-manifest-to 0 --stop-after-resume-plan   # phases a, kill, b only

Measures what the driver alone costs as the units grow: every S3 call of the driver process
in each phase of `e5ray.bench.driver` (a fresh plan, a job killed after `--kill-after`
units, the resume plan, a refresh with nothing changed, `verify --quick` and full verify),
by folder, with the bytes each GET read. The invariants it exists to show: planning, resume
and refresh read no output file, and their listings and HEADs do not grow with the units.

Starts SeaweedFS on loopback (`e5ray.bench.commands.support`) unless `--endpoint` names an S3
endpoint; writes the corpus (`--small-files` one-row files, one unit each, and `--split-files`
files of `--row-groups` one-row row groups, one unit per row group with `--unit-rows 1`) and
embeds it with the demo model (written to a temporary directory unless `--model-path`).
Prints one JSON document (also to `--json-out`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from e5ray.bench.commands.support import command_line, emit, start_seaweed
from e5ray.bench.driver import run_phases, write_corpus
from e5ray.corpus.units import UnitTarget
from e5ray.job import checkpoints

UNIT_ROWS = 1  # one unit per row group of the split files
# Footers are read from Parquet files above unit_tokens / 2 bytes (e5ray.corpus.units.needs_footer):
# at this target the one-row files stay below it and the split files are above it.
UNIT_TOKENS = 4096


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m e5ray.bench driver", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--small-files", type=int, default=5000, help="one-row Parquet files (a unit each)")
    parser.add_argument("--split-files", type=int, default=50, help="files split into --row-groups units each")
    parser.add_argument("--row-groups", type=int, default=100)
    parser.add_argument("--kill-after", type=int, default=5000, help="units finished before the driver is killed")
    parser.add_argument("--threads", type=int, default=8, help="in-process workers that embed the units")
    parser.add_argument("--scale-manifest-to", type=int, default=100_000, help="entries of the scaled manifest")
    parser.add_argument(
        "--stop-after-resume-plan",
        action="store_true",
        help="end after phase b (resume planning): no resumed job, refresh or verify",
    )
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        help="units per driver checkpoint (default e5ray.job.checkpoints.EVERY_UNITS)",
    )
    parser.add_argument("--model-path", help="an E5-like model directory (default: the demo model, written now)")
    parser.add_argument("--endpoint", help="an S3 endpoint to use instead of starting SeaweedFS")
    parser.add_argument("--bucket", help="bucket on --endpoint (default: a new one)")
    parser.add_argument("--json-out", help="also write the JSON here")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, bucket: str, work: Path) -> dict[str, Any]:
    """Write the corpus to `bucket` and run the phases; the sizes and settings with their results."""
    model_path = args.model_path
    if model_path is None:
        from e5ray.testing import write_test_model

        model_path = str(write_test_model(work / "demo-model"))
    if args.checkpoint_every is not None:
        checkpoints.EVERY_UNITS = args.checkpoint_every
    target = UnitTarget(rows=UNIT_ROWS, tokens=UNIT_TOKENS)
    corpus = f"s3://{bucket}/corpus"
    t0 = time.perf_counter()
    units = write_corpus(corpus, args.small_files, args.split_files, args.row_groups, target)
    corpus_seconds = time.perf_counter() - t0
    options = {
        "input": corpus,
        "output": f"s3://{bucket}/out",
        "model": "demo",
        "model_path": model_path,
        "unit_rows": UNIT_ROWS,
        "unit_tokens": UNIT_TOKENS,
    }
    return {
        "units": units,
        "small_files": args.small_files,
        "split_files": args.split_files,
        "row_groups": args.row_groups,
        "unit_rows": UNIT_ROWS,
        "unit_tokens": UNIT_TOKENS,
        "threads": args.threads,
        "checkpoint_every_units": checkpoints.EVERY_UNITS,
        "checkpoint_every_s": checkpoints.EVERY_S,
        "corpus_write_seconds": round(corpus_seconds, 2),
        **run_phases(options, args.kill_after, args.threads, args.scale_manifest_to, args.stop_after_resume_plan),
    }


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="e5drv-"))
    server = None
    try:
        if args.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint
        else:
            server = start_seaweed(work)
        bucket = args.bucket or f"drv-{uuid.uuid4().hex[:8]}"
        if server is not None:
            server.make_bucket(bucket)
        result = {
            "command": command_line("driver", argv),
            "store": "SeaweedFS on loopback" if server is not None else args.endpoint,
            **measure(args, bucket, work),
        }
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    emit(result, args.json_out)
    return 0
