"""Scheduled corpus refresh: re-embed only new and changed shards, drop deleted ones.

The entrypoint for schedules (cron + `ray job submit`, a Kubernetes CronJob, a KubeRay
RayJob); the same flags as jobs/embed_corpus.py. Each run commits a new manifest
version; a run killed midway is resumed by the next one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# The job's working dir (what `ray job submit --working-dir` uploaded) comes first, so the
# driver runs the same e5ray as the job's workers, which import it from there.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from e5ray.cli.app import job_parser, main_with_errors, parse_job_args, run_job_from_args  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parse_job_args(job_parser(__doc__), argv)


def main(args: argparse.Namespace) -> int:
    return main_with_errors(run_job_from_args, args)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
