"""The flags several commands share: storage timeouts, retries and endpoint (every command
that reads or writes an output), and the log level.

Defaults come from `e5ray.store.timeouts.StoragePolicy`, so the help and the library agree
on how long a store is waited for.
"""

from __future__ import annotations

import argparse
from typing import Any

from e5ray.store.filesystem import s3_options
from e5ray.store.timeouts import StoragePolicy

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")  # either case on the command line


def add_log_level(parser: argparse.ArgumentParser | argparse._ArgumentGroup, text: str) -> None:
    parser.add_argument("--log-level", type=str.upper, choices=LOG_LEVELS, default=None, help=text)


def add_storage_arguments(parser: argparse.ArgumentParser, endpoint: bool = True) -> None:
    """Storage timeouts and retries (and the S3 endpoint where not added yet)."""
    group = parser.add_argument_group("storage")
    if endpoint:
        group.add_argument("--s3-endpoint", default=None, help="S3 endpoint URL (default: $AWS_ENDPOINT_URL)")
    group.add_argument(
        "--s3-connect-timeout",
        type=float,
        default=StoragePolicy.connect_timeout,
        help=f"seconds to wait for a connection (default {StoragePolicy.connect_timeout:g})",
    )
    group.add_argument(
        "--s3-read-timeout",
        type=float,
        default=StoragePolicy.read_timeout,
        help=f"seconds to wait for an answer (default {StoragePolicy.read_timeout:g})",
    )
    group.add_argument(
        "--s3-attempts",
        type=int,
        default=StoragePolicy.attempts,
        help=f"tries per call, with exponential backoff (default {StoragePolicy.attempts})",
    )


def storage_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    policy = StoragePolicy(args.s3_connect_timeout, args.s3_read_timeout, args.s3_attempts)
    return s3_options(args.s3_endpoint, policy)
