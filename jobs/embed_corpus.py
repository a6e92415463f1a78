"""Embed a sharded corpus into embedding shards + manifest.

    ray job submit --working-dir . -- python jobs/embed_corpus.py \
        --input s3://bucket/corpus/ --output s3://bucket/embeddings/ --model intfloat/multilingual-e5-large

Runs on the cluster of RAY_ADDRESS (or the job's cluster), else on a local Ray.
Running it again on the same output is a refresh: only new and changed shards are embedded.
"""

from __future__ import annotations

import argparse
import sys

from e5ray.cli import job_parser, main_with_errors, run_job_from_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return job_parser(__doc__).parse_args(argv)


def main(args: argparse.Namespace) -> int:
    return main_with_errors(run_job_from_args, args)


if __name__ == "__main__":
    sys.exit(main(parse_args()))
