"""Embed a sharded corpus into embedding shards + manifest.

    ray job submit --working-dir . -- python jobs/embed_corpus.py \
        --input s3://bucket/corpus/ --output s3://bucket/embeddings/ --model intfloat/multilingual-e5-large

Runs on the cluster of RAY_ADDRESS (or the job's cluster), else on a local Ray.
Running it again on the same output is a refresh: only new and changed shards are embedded.
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
